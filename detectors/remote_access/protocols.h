#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

// Parsers for the first bytes of remote-access protocols. Each takes the start of one
// direction's payload, never reads past it, and returns nothing unless the bytes match the
// protocol's structure exactly: they are the evidence behind a remote_session.
namespace relaywatch::detectors::remote_access {

using Bytes = std::span<const std::uint8_t>;

// RFC 4253 section 4.2 identification string: "SSH-protoversion-softwareversion [comments]"
// ended by CR LF (LF alone is tolerated, as OpenSSH does). A server may send other lines
// (UTF-8 text) first; those are skipped.
struct SshBanner {
  std::string proto_version;  // "2.0", "1.99", "1.5"
  std::string software;       // "OpenSSH_9.2p1"
  std::string comments;       // "Debian-2+deb12u3"
};
// nullopt when the bytes are not an SSH identification, or when the line is incomplete
// (`incomplete` is set then, so the caller can wait for more bytes). `preamble_bytes`
// receives how many leading bytes are complete lines before any identification, so a
// caller can drop them and go on reading a long preamble.
std::optional<SshBanner> ParseSshBanner(Bytes data, bool* incomplete = nullptr,
                                        std::size_t* preamble_bytes = nullptr);

// MS-RDPBCGR 2.2.1.1: TPKT + X.224 Connection Request + optional cookie/routing token +
// optional RDP_NEG_REQ.
struct RdpConnectionRequest {
  std::string cookie;  // "mstshash=<user>" user name, when present
  bool has_routing_token = false;
  bool has_negotiation = false;
  std::uint32_t requested_protocols = 0;  // PROTOCOL_SSL 1, HYBRID 2, RDSTLS 4, HYBRID_EX 8
};
std::optional<RdpConnectionRequest> ParseRdpConnectionRequest(Bytes data);

// MS-RDPBCGR 2.2.1.2: TPKT + X.224 Connection Confirm + optional RDP_NEG_RSP/FAILURE.
struct RdpConnectionConfirm {
  bool has_negotiation = false;
  bool failure = false;
  std::uint32_t selected_protocol = 0;  // or the failure code when `failure`
};
std::optional<RdpConnectionConfirm> ParseRdpConnectionConfirm(Bytes data);

// Names of the RDP security protocol bits, e.g. "ssl,hybrid"; "rdp" for 0 (standard
// RDP security).
std::string RdpProtocolNames(std::uint32_t protocols);

// RFC 6143 section 7.1.1 ProtocolVersion: exactly "RFB xxx.yyy\n" (12 bytes).
struct RfbVersion {
  int major = 0;
  int minor = 0;
};
std::optional<RfbVersion> ParseRfbVersion(Bytes data);

// RFC 6143 section 7.5: what a viewer sends once the session is set up, when `data` is one
// or more whole client messages (SetPixelFormat, SetEncodings, FramebufferUpdateRequest,
// KeyEvent, PointerEvent, ClientCutText); nullopt for anything else (a message this does not
// know, a message cut or run on, the handshake's own bytes).
struct RfbClientMessages {
  bool update_request = false;  // a FramebufferUpdateRequest among them: the setup is over
  bool input = false;           // a KeyEvent, PointerEvent or ClientCutText: the person's
};
std::optional<RfbClientMessages> ParseRfbClientMessages(Bytes data);

// MS-RDPEUDP 2.2.2.1 SYN datagrams. The client's SYN has snSourceAck = -1 and the
// RDPUDP_FLAG_SYN flag; the server's SYN+ACK has SYN|ACK and acknowledges the client's
// initial sequence number. Both carry up/downstream MTUs in [1132, 1232].
struct RdpUdpSyn {
  bool ack = false;  // SYN+ACK (server) rather than SYN (client)
  std::uint32_t source_ack = 0;
  std::uint32_t initial_sequence = 0;
  std::uint16_t upstream_mtu = 0;
  std::uint16_t downstream_mtu = 0;
};
std::optional<RdpUdpSyn> ParseRdpUdpSyn(Bytes data);

// MS-RDPEUDP 2.2.2.x datagram after the handshake: RDPUDP_FEC_HEADER (snSourceAck,
// uReceiveWindowSize, uFlags with ACK set, SYN clear), the ACK vector, and for DATA
// datagrams the source payload header's snCoded. A capture that starts mid-session has no
// SYN; the two directions then prove the protocol by acknowledging each other's snCoded.
struct RdpUdpDatagram {
  std::uint32_t source_ack = 0;
  std::uint16_t flags = 0;
  bool has_data = false;
  std::uint32_t sn_coded = 0;
};
std::optional<RdpUdpDatagram> ParseRdpUdpDatagram(Bytes data);

// TeamViewer framing (verified against real captures; magic bytes as in nDPI's dissector):
// a TCP direction is a chain of frames, either `17 24 cmd len16le data[len]` (the older
// protocol, also inside UDP) or `11 30 cmd flags len32le ...` with a 24-byte header and
// `len` bytes of data. Returns how many complete frames chain from the start of `stream`
// with every boundary landing on the next frame's magic, or 0 when the bytes break the
// framing.
int TeamViewerTcpFrames(Bytes stream);
// A UDP datagram: an 11-byte datagram header, then one `17 24` frame filling the datagram.
bool IsTeamViewerUdp(Bytes datagram);

// NoMachine NX greetings before its TLS: "NXSH-<version>\n" from the client and
// "NXD-<version>\n" from the server, the version being digits and dots.
enum class NxGreeting { kNone, kClient, kServer };
NxGreeting ParseNxGreeting(Bytes data);
// NoMachine UDP media datagrams: type byte, 0, LE16 1, LE16 total length = datagram size,
// LE16 counter, 2 zero bytes. Returns the counter, or -1.
int NxUdpCounter(Bytes datagram);

// Radmin (TCP 4899): each message starts `01 00 00 00 <type>`; the client's hello is 10
// bytes of type 01 ending `08 08`, the server's answer 46 bytes of type 25 with
// `02 12 08 02` at 7..10, and the session resumption exchange is 14 bytes of type 05 ending
// `27 27 ..` from both sides.
enum class RadminMessage { kNone, kClientHello, kServerHello, kResume };
RadminMessage ParseRadmin(Bytes data);

// Citrix ICA: both sides open with the 6-byte greeting 7f 7f 'I' 'C' 'A' 00 (the server
// first); Session Reliability (CGP, TCP 2598) opens with 1a 'CGP/01'.
bool IsIcaGreeting(Bytes data);
bool IsCgpGreeting(Bytes data);

}  // namespace relaywatch::detectors::remote_access
