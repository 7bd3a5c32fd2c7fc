#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "capture/base/counter.h"

namespace relaywatch::decode {

// Why a frame was not decoded to a flow. Malformed reasons are counted in
// relaywatch_decode_errors_total{reason}; the "skipped" ones (valid but out of scope)
// in relaywatch_packets_skipped_total{reason}.
enum class DecodeReason : std::uint8_t {
  // Malformed or truncated input.
  kLinkTruncated,
  kVlanTruncated,
  kIpv4Truncated,
  kIpv4BadVersion,
  kIpv4BadHeaderLength,
  kIpv4BadTotalLength,
  kIpv6Truncated,
  kIpv6ExtensionTruncated,
  kTcpTruncated,
  kTcpBadHeaderLength,
  kTcpBadOption,
  kUdpTruncated,
  kUdpBadLength,
  kIcmpTruncated,
  kGreTruncated,
  kVxlanTruncated,
  kGeneveTruncated,
  kEncapsulationTooDeep,
  kWlanTruncated,
  kWlanBadFcs,  // radiotap says the frame failed its checksum: the radio received it damaged
  // Valid but not analysed.
  kUnsupportedLinkType,
  kNonIp,
  kIpFragment,
  kOtherIpProtocol,
  kGreUnsupported,
  kWlanNotData,      // 802.11 management and control frames, data frames without a payload
  kWlanProtected,    // encrypted (WEP/WPA): the payload cannot be read
  kWlanUnsupported,  // A-MSDU aggregates and fragments, which are not reassembled
  kCount,
};

inline constexpr std::size_t kDecodeReasonCount = static_cast<std::size_t>(DecodeReason::kCount);

// Label value for a reason (bounded, stable: dashboards rely on it).
std::string_view DecodeReasonName(DecodeReason reason);
// True for malformed input, false for valid traffic that is skipped.
bool IsDecodeError(DecodeReason reason);

// Per-worker decode counters; written by the worker only.
struct DecodeCounters {
  std::array<WorkerCounter, kDecodeReasonCount> by_reason;
  WorkerCounter decoded;
  WorkerCounter tunnelled;

  void Count(DecodeReason reason) { by_reason[static_cast<std::size_t>(reason)].Increment(); }
  std::uint64_t Get(DecodeReason reason) const {
    return by_reason[static_cast<std::size_t>(reason)].Read();
  }
};

}  // namespace relaywatch::decode
