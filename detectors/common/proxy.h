#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "capture/decode/decoded_packet.h"
#include "detectors/common/tcp_cursor.h"

// A forward proxy's opening exchange, after which a TCP connection carries another protocol
// end to end: SOCKS 4 and 4a, SOCKS 5 (RFC 1928, with RFC 1929 username/password) and HTTP
// CONNECT (RFC 9110 9.3.6). A parser of the tunnelled protocol reads the streams after it.
// Each parser takes the start of one direction, never reads past it, and matches only the
// exact structure; `incomplete` is set when the bytes so far could still become one.
namespace relaywatch::detectors {

enum class ProxyProtocol : std::uint8_t { kSocks4, kSocks5, kHttpConnect };

std::string_view ProxyProtocolName(ProxyProtocol protocol);

// The client's side: the greeting, any authentication, and the request to connect.
struct ProxyRequest {
  ProxyProtocol protocol = ProxyProtocol::kSocks5;
  std::string target;  // an IP literal or a host name, as requested
  std::uint16_t target_port = 0;
  std::size_t length = 0;  // bytes of the client's stream the setup takes
};
std::optional<ProxyRequest> ParseProxyRequest(std::span<const std::uint8_t> client,
                                              bool* incomplete);

// The proxy's side, for a request of `protocol`.
struct ProxyReply {
  bool granted = false;
  std::size_t length = 0;  // bytes of the proxy's stream the answer takes
};
std::optional<ProxyReply> ParseProxyReply(ProxyProtocol protocol,
                                          std::span<const std::uint8_t> proxy, bool* incomplete);

// One setup off the fronts of the client's and the proxy's buffered streams: once the
// request and its answer are both complete they are erased from the buffers and returned.
// Otherwise nothing is erased, and `wait` says which side more bytes may still complete
// (kNone: these bytes are no setup).
struct ProxySetup {
  ProxyRequest request;
  bool granted = false;
};
enum class ProxySetupWait : std::uint8_t { kNone, kRequest, kReply };
std::optional<ProxySetup> TakeProxySetup(std::string& client, std::string& proxy,
                                         ProxySetupWait* wait);

// Follows a proxy setup at the start of a TCP connection segment by segment, for a detector
// that does not keep the streams: where each direction's tunnelled bytes begin. One setup is
// followed (and an HTTP proxy asked again after a refusal), not a chain.
class ProxySetupReader {
 public:
  enum class State : std::uint8_t { kReading, kTunnel, kNone };

  // Whether a client's first segment can begin a proxy request.
  static bool MayStart(std::span<const std::uint8_t> first_client_segment);
  // `client`: the segment is the proxy client's (the originator's).
  State Feed(const decode::DecodedPacket& p, bool client);
  State state() const { return state_; }
  // Once kTunnel: the granted request, and each direction's bytes past the setup that came
  // with the setup's segments (the client may send before the answer; the proxy's answer may
  // share a segment with the server's first bytes). Valid until the reader is destroyed.
  const ProxyRequest& request() const { return request_; }
  std::span<const std::uint8_t> tunnel_start(bool client) const;

 private:
  common::TcpCursor cursor_[2];
  std::string bytes_[2];  // [0] the client's, [1] the proxy's: the setup so far
  ProxyRequest request_;
  State state_ = State::kReading;
  int refusals_ = 0;
};

}  // namespace relaywatch::detectors
