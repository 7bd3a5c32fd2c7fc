#pragma once

#include <cstdint>
#include <string>

#include "capture/base/ip_address.h"

namespace relaywatch::flow {

// Community ID v1 (corelight/community-id-spec): "1:" + base64(SHA-1(seed | addresses |
// proto | 0 | ports)), endpoints ordered so both directions of a flow give the same ID.
// For ICMP/ICMPv6 the "ports" are the type and its counterpart type (echo request/reply
// and the like), or type and code for one-way types. Other protocols hash no ports.
std::string CommunityId(std::uint16_t seed, const IpAddress& src, const IpAddress& dst,
                        std::uint8_t protocol, std::uint16_t src_port, std::uint16_t dst_port);

}  // namespace relaywatch::flow
