#include "capture/decode/decoder.h"

#include <algorithm>
#include <cstring>

#include "capture/base/bytes.h"

namespace relaywatch::decode {
namespace {

constexpr std::uint16_t kEtherIpv4 = 0x0800;
constexpr std::uint16_t kEtherIpv6 = 0x86dd;
constexpr std::uint16_t kEtherVlan = 0x8100;
constexpr std::uint16_t kEtherQinQ = 0x88a8;
constexpr std::uint16_t kEtherQinQOld = 0x9100;
constexpr std::uint16_t kEtherMpls = 0x8847;
constexpr std::uint16_t kEtherMplsMulticast = 0x8848;
constexpr std::uint16_t kEtherPppoeSession = 0x8864;
constexpr std::uint16_t kEtherTransparentBridging = 0x6558;
constexpr std::uint16_t kEtherErspanTypeII = 0x88be;

constexpr std::uint16_t kPppIpv4 = 0x0021;
constexpr std::uint16_t kPppIpv6 = 0x0057;

constexpr std::uint16_t kVxlanPort = 4789;
constexpr std::uint16_t kGenevePort = 6081;

using Bytes = std::span<const std::uint8_t>;

// One decode of one frame. Layers call each other; `depth_` bounds the recursion that
// tunnels and tag stacks could otherwise drive without limit.
class FrameDecoder {
 public:
  // `snapped`: the capture kept less of the frame than was on the air or the wire.
  FrameDecoder(DecodedPacket& out, DecodeCounters& counters, bool snapped)
      : out_(out), counters_(counters), snapped_(snapped) {}

  bool Link(int dlt, Bytes b);
  bool Ethernet(Bytes b);
  bool EtherType(std::uint16_t type, Bytes b);
  bool Ip(Bytes b);  // version from the first nibble

 private:
  bool Fail(DecodeReason reason) {
    counters_.Count(reason);
    return false;
  }
  bool Deeper() { return ++depth_ <= kMaxEncapsulationDepth; }
  bool Ipv4(Bytes b);
  bool Ipv6(Bytes b);
  bool Transport(std::uint8_t protocol, Bytes b);
  bool Tcp(Bytes b);
  bool Udp(Bytes b);
  bool Icmp(Bytes b);
  bool Gre(Bytes b);
  bool Vxlan(Bytes b);
  bool Geneve(Bytes b);
  bool Mpls(Bytes b);
  bool Ppp(Bytes b);
  bool PppoeSession(Bytes b);
  bool Nflog(Bytes b);
  bool PppOrCiscoHdlc(Bytes b);
  bool Radiotap(Bytes b);
  // `padded`: radiotap's flag for padding after the MAC header, to four bytes.
  bool Ieee80211(Bytes b, bool padded);
  bool Llc(Bytes b);
  // `carries_ip`: the encapsulation's payload is an IP packet, not an Ethernet frame.
  bool Tunnel(bool carries_ip) {
    ++out_.tunnel_depth;
    if (carries_ip)
      ++out_.ip_tunnel_depth;
    return true;
  }

  DecodedPacket& out_;
  DecodeCounters& counters_;
  const bool snapped_;
  int depth_ = 0;
};

bool FrameDecoder::Link(int dlt, Bytes b) {
  switch (dlt) {
    case kDltEthernet:
      return Ethernet(b);
    case kDltRaw:
    case kDltRawOpenBsd:
    case kDltLinktypeRaw:
    case kDltIpv4:
    case kDltIpv6:
      return Ip(b);
    case kDltNull:
    case kDltLoop: {
      // A 4-byte address family: host order of the capturing machine for NULL, network
      // order for LOOP. AF_INET is 2 everywhere; AF_INET6 is 10, 24, 28 or 30 by OS.
      if (b.size() < 4) {
        return Fail(DecodeReason::kLinkTruncated);
      }
      return Ip(b.subspan(4));
    }
    case kDltLinuxSll:
      if (b.size() < 16) {
        return Fail(DecodeReason::kLinkTruncated);
      }
      return EtherType(Be16(b.data() + 14), b.subspan(16));
    case kDltLinuxSll2:
      if (b.size() < 20) {
        return Fail(DecodeReason::kLinkTruncated);
      }
      return EtherType(Be16(b.data()), b.subspan(20));
    case kDltPpp:
    case kDltPppSerial:
    case kDltCiscoHdlc:
      return PppOrCiscoHdlc(b);
    case kDltPppEther:  // PPPoE without its Ethernet header
      return PppoeSession(b);
    case kDltNflog:
      return Nflog(b);
    case kDltIeee80211:
      return Ieee80211(b, /*padded=*/false);
    case kDltRadiotap:
      return Radiotap(b);
    case kDltPpi: {
      // Per-Packet Information: version 0, flags, little-endian header length and the
      // link type of the frame after it. Nested PPI is refused, not followed.
      if (b.size() < 8) {
        return Fail(DecodeReason::kLinkTruncated);
      }
      const std::size_t length = Le16(b.data() + 2);
      const std::uint32_t inner = Le32(b.data() + 4);
      if (length < 8 || length > b.size()) {
        return Fail(DecodeReason::kLinkTruncated);
      }
      if (inner == kDltPpi || inner > 0xffff) {
        return Fail(DecodeReason::kUnsupportedLinkType);
      }
      return Link(static_cast<int>(inner), b.subspan(length));
    }
    default:
      return Fail(DecodeReason::kUnsupportedLinkType);
  }
}

bool FrameDecoder::Ethernet(Bytes b) {
  if (b.size() < 14) {
    return Fail(DecodeReason::kLinkTruncated);
  }
  return EtherType(Be16(b.data() + 12), b.subspan(14));
}

bool FrameDecoder::EtherType(std::uint16_t type, Bytes b) {
  switch (type) {
    case kEtherIpv4:
    case kEtherIpv6:
      return Ip(b);
    case kEtherVlan:
    case kEtherQinQ:
    case kEtherQinQOld:
      if (!Deeper()) {
        return Fail(DecodeReason::kEncapsulationTooDeep);
      }
      if (b.size() < 4) {
        return Fail(DecodeReason::kVlanTruncated);
      }
      if (out_.vlan_id == 0) {
        out_.vlan_id = Be16(b.data()) & 0x0fff;
      }
      return EtherType(Be16(b.data() + 2), b.subspan(4));
    case kEtherMpls:
    case kEtherMplsMulticast:
      return Mpls(b);
    case kEtherPppoeSession:
      return PppoeSession(b);
    default:
      return Fail(DecodeReason::kNonIp);
  }
}

// A PPP frame from its protocol field: two bytes, or one when compressed (RFC 1661 6.5:
// protocol numbers have an odd low byte and an even high one, so an odd first byte is a
// compressed field).
bool FrameDecoder::Ppp(Bytes b) {
  if (b.empty()) {
    return Fail(DecodeReason::kLinkTruncated);
  }
  const bool compressed = (b[0] & 0x01) != 0;
  if (!compressed && b.size() < 2) {
    return Fail(DecodeReason::kLinkTruncated);
  }
  const std::uint16_t protocol = compressed ? b[0] : Be16(b.data());
  if (protocol != kPppIpv4 && protocol != kPppIpv6) {
    return Fail(DecodeReason::kNonIp);
  }
  return Ip(b.subspan(compressed ? 1 : 2));
}

// Linux NFLOG (iptables/nftables `log group`, `tcpdump -i nflog:N`): a 4-byte header, then
// TLVs whose length (header included, padded to 4 bytes) and type are in the capturing
// host's byte order, which libpcap keeps for the reader; NFULA_PAYLOAD (9) is the IP packet.
bool FrameDecoder::Nflog(Bytes b) {
  constexpr std::uint16_t kNfulaPayload = 9;
  if (b.size() < 4) {
    return Fail(DecodeReason::kLinkTruncated);
  }
  b = b.subspan(4);
  while (b.size() >= 4) {
    std::uint16_t length = 0;
    std::uint16_t type = 0;
    std::memcpy(&length, b.data(), 2);
    std::memcpy(&type, b.data() + 2, 2);
    if (length < 4) {
      return Fail(DecodeReason::kLinkTruncated);
    }
    if ((type & 0x7fff) == kNfulaPayload) {
      // The snapshot length may cut the packet, as it may any frame's.
      return Ip(b.subspan(4, std::min<std::size_t>(length, b.size()) - 4));
    }
    if (length > b.size()) {
      return Fail(DecodeReason::kLinkTruncated);
    }
    b = b.subspan(std::min<std::size_t>(b.size(), (length + 3U) & ~3U));
  }
  return Fail(DecodeReason::kNonIp);  // a log message without the packet
}

// Radiotap (radiotap.org): version 0, a pad byte, the little-endian length of the whole
// header, then presence words (bit 31: another follows) and the fields in bit order, each
// aligned to its own size from the header's start. Only the Flags field (bit 1) matters
// here; before it comes only TSFT (bit 0, 8 bytes), and both belong to the first word.
bool FrameDecoder::Radiotap(Bytes b) {
  constexpr std::uint32_t kTsft = 1U << 0;
  constexpr std::uint32_t kFlags = 1U << 1;
  constexpr std::uint32_t kExtended = 1U << 31;
  constexpr std::uint8_t kFlagFcsAtEnd = 0x10;
  constexpr std::uint8_t kFlagDataPad = 0x20;
  constexpr std::uint8_t kFlagBadFcs = 0x40;
  if (b.size() < 8) {
    return Fail(DecodeReason::kWlanTruncated);
  }
  if (b[0] != 0) {
    return Fail(DecodeReason::kWlanUnsupported);  // the only version there is
  }
  const std::size_t length = Le16(b.data() + 2);
  if (length < 8 || length > b.size()) {
    return Fail(DecodeReason::kWlanTruncated);
  }
  const std::uint32_t present = Le32(b.data() + 4);
  std::size_t offset = 8;
  for (std::uint32_t word = present; (word & kExtended) != 0; offset += 4) {
    if (offset + 4 > length) {
      return Fail(DecodeReason::kWlanTruncated);
    }
    word = Le32(b.data() + offset);
  }
  std::uint8_t flags = 0;
  if ((present & kFlags) != 0) {
    if ((present & kTsft) != 0) {
      offset = ((offset + 7) & ~std::size_t{7}) + 8;
    }
    if (offset >= length) {
      return Fail(DecodeReason::kWlanTruncated);
    }
    flags = b[offset];
  }
  if ((flags & kFlagBadFcs) != 0) {
    return Fail(DecodeReason::kWlanBadFcs);
  }
  Bytes frame = b.subspan(length);
  // The checksum trails the frame, unless a snapshot length cut the end off: then what was
  // kept is all frame (a headers-only capture would otherwise lose its last header bytes).
  if ((flags & kFlagFcsAtEnd) != 0 && !snapped_) {
    if (frame.size() < 4) {
      return Fail(DecodeReason::kWlanTruncated);
    }
    frame = frame.first(frame.size() - 4);
  }
  return Ieee80211(frame, (flags & kFlagDataPad) != 0);
}

// An IEEE 802.11 frame (802.11-2020 9.2-9.3): only data frames carry IP. The MAC header is
// 24 bytes, 30 with a fourth address (to and from the distribution system: a bridge or
// mesh), two more with QoS control, four more with HT control (QoS and the Order bit).
bool FrameDecoder::Ieee80211(Bytes b, bool padded) {
  constexpr std::uint8_t kTypeData = 2;
  constexpr std::uint8_t kToDs = 0x01;
  constexpr std::uint8_t kFromDs = 0x02;
  constexpr std::uint8_t kMoreFragments = 0x04;
  constexpr std::uint8_t kProtected = 0x40;
  constexpr std::uint8_t kOrder = 0x80;
  // Control frames (ACK, CTS: 10 bytes) are shorter than a data frame's header.
  if (b.size() < 2) {
    return Fail(DecodeReason::kWlanTruncated);
  }
  const std::uint8_t version = b[0] & 0x03;
  const std::uint8_t type = (b[0] >> 2) & 0x03;
  const std::uint8_t subtype = b[0] >> 4;
  const std::uint8_t flags = b[1];
  if (version != 0) {
    return Fail(DecodeReason::kWlanUnsupported);
  }
  // Subtypes with bit 2 set (Null, QoS Null, CF-Ack/Poll alone) carry no payload.
  if (type != kTypeData || (subtype & 0x04) != 0) {
    return Fail(DecodeReason::kWlanNotData);
  }
  if (b.size() < 24) {
    return Fail(DecodeReason::kWlanTruncated);
  }
  if ((flags & kProtected) != 0) {
    return Fail(DecodeReason::kWlanProtected);
  }
  const bool qos = (subtype & 0x08) != 0;
  std::size_t header = 24;
  if ((flags & kToDs) != 0 && (flags & kFromDs) != 0) {
    header += 6;
  }
  const std::size_t qos_control = header;
  if (qos) {
    header += 2;
    if ((flags & kOrder) != 0) {
      header += 4;
    }
  }
  if (padded) {
    header = (header + 3) & ~std::size_t{3};
  }
  if (b.size() < header) {
    return Fail(DecodeReason::kWlanTruncated);
  }
  // A fragment (more follow, or a fragment number) holds part of a packet; an A-MSDU
  // (QoS control bit 7) holds several, each with its own header: neither is taken apart.
  const bool fragment = (flags & kMoreFragments) != 0 || (b[22] & 0x0f) != 0;
  const bool aggregate = qos && (b[qos_control] & 0x80) != 0;
  if (fragment || aggregate) {
    return Fail(DecodeReason::kWlanUnsupported);
  }
  return Llc(b.subspan(header));
}

// 802.2 LLC with a SNAP header (RFC 1042, and 802.1H's bridge tunnel): AA AA 03, an
// organisation code, then the EtherType. Other LLC payloads (STP, IPX) are not IP.
bool FrameDecoder::Llc(Bytes b) {
  if (b.size() < 8) {
    return Fail(DecodeReason::kWlanTruncated);
  }
  if (b[0] != 0xaa || b[1] != 0xaa || b[2] != 0x03) {
    return Fail(DecodeReason::kNonIp);
  }
  return EtherType(Be16(b.data() + 6), b.subspan(8));
}

// RFC 2516: a 6-byte PPPoE session header, then PPP.
bool FrameDecoder::PppoeSession(Bytes b) {
  if (b.size() < 6) {
    return Fail(DecodeReason::kLinkTruncated);
  }
  return Ppp(b.subspan(6));
}

// Serial links as libpcap hands them: PPP with or without the HDLC-like address and control
// bytes (0xff 0x03, RFC 1662), or Cisco HDLC (address 0x0f unicast or 0x8f broadcast,
// control 0, then an EtherType), which routers also put under the PPP link types.
bool FrameDecoder::PppOrCiscoHdlc(Bytes b) {
  if (b.size() < 2) {
    return Fail(DecodeReason::kLinkTruncated);
  }
  if ((b[0] == 0x0f || b[0] == 0x8f) && b[1] == 0x00) {
    if (b.size() < 4) {
      return Fail(DecodeReason::kLinkTruncated);
    }
    return EtherType(Be16(b.data() + 2), b.subspan(4));
  }
  if (b[0] == 0xff && b[1] == 0x03) {
    return Ppp(b.subspan(2));
  }
  return Ppp(b);
}

bool FrameDecoder::Mpls(Bytes b) {
  // Labels until the bottom-of-stack bit; the payload type is not signalled, so guess it
  // from the IP version nibble as Wireshark and Suricata do.
  while (true) {
    if (!Deeper()) {
      return Fail(DecodeReason::kEncapsulationTooDeep);
    }
    if (b.size() < 4) {
      return Fail(DecodeReason::kLinkTruncated);
    }
    const bool bottom = (b[2] & 0x01) != 0;
    b = b.subspan(4);
    if (bottom) {
      break;
    }
  }
  if (b.empty()) {
    return Fail(DecodeReason::kLinkTruncated);
  }
  const int version = b[0] >> 4;
  if (version != 4 && version != 6) {
    return Fail(DecodeReason::kNonIp);
  }
  return Ip(b);
}

bool FrameDecoder::Ip(Bytes b) {
  // An inner IP header (tunnel) replaces everything learnt from the outer transport.
  out_.src_port = out_.dst_port = 0;
  out_.tcp_flags = 0;
  out_.payload = {};
  out_.payload_length = 0;
  if (b.empty()) {
    return Fail(DecodeReason::kIpv4Truncated);
  }
  switch (b[0] >> 4) {
    case 4:
      return Ipv4(b);
    case 6:
      return Ipv6(b);
    default:
      return Fail(DecodeReason::kIpv4BadVersion);
  }
}

bool FrameDecoder::Ipv4(Bytes b) {
  if (b.size() < 20) {
    return Fail(DecodeReason::kIpv4Truncated);
  }
  const std::size_t header = std::size_t{b[0] & 0x0fU} * 4;
  if (header < 20 || header > b.size()) {
    return Fail(DecodeReason::kIpv4BadHeaderLength);
  }
  std::size_t total = Be16(b.data() + 2);
  // 0: a segment captured on its sender before the NIC cut it (TSO/GSO), whose length no
  // 16-bit field can hold; the captured bytes are the packet, as IPv6's 0 is read below and
  // Wireshark reads both.
  if (total == 0) {
    total = b.size();
  }
  if (total < header) {
    return Fail(DecodeReason::kIpv4BadTotalLength);
  }
  // Frames carry link padding past the IP total length; a snaplen may cut before it.
  const std::size_t available = std::min(total, b.size());
  out_.ip_version = 4;
  out_.src = IpAddress::FromV4(b.data() + 12);
  out_.dst = IpAddress::FromV4(b.data() + 16);
  out_.ttl = b[8];
  out_.ip_id = Be16(b.data() + 4);
  const std::uint16_t frag = Be16(b.data() + 6);
  out_.dont_fragment = (frag & 0x4000) != 0;
  // RFC 791: only the first fragment carries the L4 header, and a first fragment alone
  // holds a partial payload; without reassembly neither is analysed.
  if ((frag & 0x2000) != 0 || (frag & 0x1fff) != 0) {
    return Fail(DecodeReason::kIpFragment);
  }
  out_.payload_length = static_cast<std::uint32_t>(total - header);
  return Transport(b[9], b.subspan(header, available - header));
}

bool FrameDecoder::Ipv6(Bytes b) {
  if (b.size() < 40) {
    return Fail(DecodeReason::kIpv6Truncated);
  }
  const std::size_t payload_length = Be16(b.data() + 4);
  out_.ip_version = 6;
  out_.src = IpAddress::FromV6(b.data() + 8);
  out_.dst = IpAddress::FromV6(b.data() + 24);
  out_.ttl = b[7];
  out_.ip_id = 0;
  out_.dont_fragment = false;
  std::uint8_t next = b[6];
  // Payload length 0 means a jumbogram (RFC 2675): trust the captured size.
  Bytes rest = b.subspan(40);
  if (payload_length != 0 && payload_length < rest.size()) {
    rest = rest.first(payload_length);
  }
  std::size_t announced = payload_length != 0 ? payload_length : rest.size();
  for (int hops = 0;; ++hops) {
    if (hops > kMaxEncapsulationDepth) {
      return Fail(DecodeReason::kEncapsulationTooDeep);
    }
    std::size_t ext_length = 0;
    switch (next) {
      case 0:    // hop-by-hop
      case 43:   // routing
      case 60:   // destination options
      case 135:  // mobility
        if (rest.size() < 8) {
          return Fail(DecodeReason::kIpv6ExtensionTruncated);
        }
        ext_length = (std::size_t{rest[1]} + 1) * 8;
        break;
      case 51:  // AH: length in 4-byte units, minus 2
        if (rest.size() < 8) {
          return Fail(DecodeReason::kIpv6ExtensionTruncated);
        }
        ext_length = (std::size_t{rest[1]} + 2) * 4;
        break;
      case 44: {  // fragment
        if (rest.size() < 8) {
          return Fail(DecodeReason::kIpv6ExtensionTruncated);
        }
        const std::uint16_t frag = Be16(rest.data() + 2);
        if ((frag & 0xfff8) != 0 || (frag & 0x0001) != 0) {
          return Fail(DecodeReason::kIpFragment);
        }
        ext_length = 8;  // an atomic fragment (offset 0, no more fragments) is whole
        break;
      }
      default:
        out_.payload_length = static_cast<std::uint32_t>(announced);
        return Transport(next, rest);
    }
    if (ext_length > rest.size()) {
      return Fail(DecodeReason::kIpv6ExtensionTruncated);
    }
    next = rest[0];
    rest = rest.subspan(ext_length);
    announced = announced >= ext_length ? announced - ext_length : 0;
  }
}

bool FrameDecoder::Transport(std::uint8_t protocol, Bytes b) {
  out_.protocol = protocol;
  switch (protocol) {
    case kProtoTcp:
      return Tcp(b);
    case kProtoUdp:
      return Udp(b);
    case kProtoIcmp:
    case kProtoIcmpV6:
      return Icmp(b);
    case kProtoGre:
      if (!Deeper()) {
        return Fail(DecodeReason::kEncapsulationTooDeep);
      }
      return Gre(b);
    case 4:   // IPv4 in IP
    case 41:  // IPv6 in IP
      if (!Deeper()) {
        return Fail(DecodeReason::kEncapsulationTooDeep);
      }
      return Tunnel(true) && Ip(b);
    default:
      // Keep the packet: flows of other protocols are still counted.
      out_.payload = b;
      return true;
  }
}

bool FrameDecoder::Tcp(Bytes b) {
  if (b.size() < 20) {
    return Fail(DecodeReason::kTcpTruncated);
  }
  const std::size_t header = static_cast<std::size_t>(b[12] >> 4) * 4;
  if (header < 20 || header > b.size()) {
    return Fail(DecodeReason::kTcpBadHeaderLength);
  }
  out_.src_port = Be16(b.data());
  out_.dst_port = Be16(b.data() + 2);
  out_.seq = Be32(b.data() + 4);
  out_.ack = Be32(b.data() + 8);
  out_.tcp_flags = b[13];
  out_.window = Be16(b.data() + 14);
  TcpOptions& o = out_.tcp_options;
  o = TcpOptions{};
  for (std::size_t i = 20; i < header;) {
    const std::uint8_t kind = b[i];
    if (o.layout_size < TcpOptions::kMaxLayout) {
      o.layout[o.layout_size++] = kind;
    }
    if (kind == 0) {
      break;  // end of option list
    }
    if (kind == 1) {
      ++i;
      continue;
    }
    if (i + 1 >= header || b[i + 1] < 2 || i + b[i + 1] > header) {
      // A malformed option list ends option parsing, not the packet: the header length
      // already told us where the payload starts.
      counters_.Count(DecodeReason::kTcpBadOption);
      break;
    }
    const std::uint8_t length = b[i + 1];
    const std::uint8_t* v = b.data() + i + 2;
    if (kind == 2 && length == 4) {
      o.has_mss = true;
      o.mss = Be16(v);
    } else if (kind == 3 && length == 3) {
      o.has_window_scale = true;
      o.window_scale = v[0];
    } else if (kind == 4 && length == 2) {
      o.sack_permitted = true;
    } else if (kind == 8 && length == 10) {
      o.has_timestamps = true;
      o.ts_value = Be32(v);
      o.ts_echo = Be32(v + 4);
    }
    i += length;
  }
  out_.payload = b.subspan(header);
  out_.payload_length =
      out_.payload_length >= header ? static_cast<std::uint32_t>(out_.payload_length - header) : 0;
  return true;
}

bool FrameDecoder::Udp(Bytes b) {
  if (b.size() < 8) {
    return Fail(DecodeReason::kUdpTruncated);
  }
  const std::size_t length = Be16(b.data() + 4);
  if (length < 8) {
    return Fail(DecodeReason::kUdpBadLength);
  }
  out_.src_port = Be16(b.data());
  out_.dst_port = Be16(b.data() + 2);
  Bytes payload = b.subspan(8);
  if (length - 8 < payload.size()) {
    payload = payload.first(length - 8);
  }
  out_.payload = payload;
  out_.payload_length = static_cast<std::uint32_t>(length - 8);
  if (out_.dst_port == kVxlanPort) {
    return Vxlan(payload);
  }
  if (out_.dst_port == kGenevePort) {
    return Geneve(payload);
  }
  return true;
}

bool FrameDecoder::Icmp(Bytes b) {
  if (b.size() < 4) {
    return Fail(DecodeReason::kIcmpTruncated);
  }
  out_.icmp_type = b[0];
  out_.icmp_code = b[1];
  out_.payload = b.subspan(4);
  return true;
}

bool FrameDecoder::Gre(Bytes b) {
  if (b.size() < 4) {
    return Fail(DecodeReason::kGreTruncated);
  }
  const std::uint16_t flags = Be16(b.data());
  if ((flags & 0x0007) != 0) {
    return Fail(DecodeReason::kGreUnsupported);  // version 1 is PPTP's enhanced GRE
  }
  std::size_t header = 4;
  if (flags & 0x8000)
    header += 4;  // checksum + reserved
  if (flags & 0x2000)
    header += 4;  // key
  if (flags & 0x1000)
    header += 4;  // sequence number
  if (b.size() < header) {
    return Fail(DecodeReason::kGreTruncated);
  }
  const std::uint16_t type = Be16(b.data() + 2);
  Bytes inner = b.subspan(header);
  switch (type) {
    case kEtherIpv4:
    case kEtherIpv6:
      return Tunnel(true) && Ip(inner);
    case kEtherTransparentBridging:
      return Tunnel(false) && Ethernet(inner);
    case kEtherErspanTypeII:
      Tunnel(false);
      // ERSPAN type II: an 8-byte header before the mirrored Ethernet frame.
      if (inner.size() < 8) {
        return Fail(DecodeReason::kGreTruncated);
      }
      return Ethernet(inner.subspan(8));
    default:
      return Fail(DecodeReason::kGreUnsupported);
  }
}

bool FrameDecoder::Vxlan(Bytes b) {
  if (!Deeper()) {
    return Fail(DecodeReason::kEncapsulationTooDeep);
  }
  // RFC 7348: 8 bytes, the I flag (0x08) marks a valid VNI. Without it the datagram is
  // something else on port 4789 and stays an ordinary UDP flow.
  if (b.size() < 8 + 14) {
    return Fail(DecodeReason::kVxlanTruncated);
  }
  if ((b[0] & 0x08) == 0) {
    return true;
  }
  Tunnel(false);
  return Ethernet(b.subspan(8));
}

bool FrameDecoder::Geneve(Bytes b) {
  if (!Deeper()) {
    return Fail(DecodeReason::kEncapsulationTooDeep);
  }
  // RFC 8926: version (2 bits) must be 0; options length in 4-byte words.
  if (b.size() < 8) {
    return Fail(DecodeReason::kGeneveTruncated);
  }
  if ((b[0] >> 6) != 0) {
    return true;
  }
  const std::size_t header = 8 + std::size_t{b[0] & 0x3fU} * 4;
  if (b.size() < header) {
    return Fail(DecodeReason::kGeneveTruncated);
  }
  const std::uint16_t type = Be16(b.data() + 2);
  if (type == kEtherTransparentBridging) {
    return Tunnel(false) && Ethernet(b.subspan(header));
  }
  if (type == kEtherIpv4 || type == kEtherIpv6) {
    return Tunnel(true) && Ip(b.subspan(header));
  }
  return Fail(DecodeReason::kNonIp);
}

}  // namespace

bool IsSupportedLinkType(int dlt) {
  switch (dlt) {
    case kDltNull:
    case kDltEthernet:
    case kDltRaw:
    case kDltRawOpenBsd:
    case kDltLinktypeRaw:
    case kDltLoop:
    case kDltLinuxSll:
    case kDltLinuxSll2:
    case kDltIpv4:
    case kDltIpv6:
    case kDltPpp:
    case kDltPppSerial:
    case kDltPppEther:
    case kDltCiscoHdlc:
    case kDltNflog:
    case kDltIeee80211:
    case kDltRadiotap:
    case kDltPpi:  // frames of the link types above inside it
      return true;
    default:
      return false;
  }
}

bool DecodeFrame(int dlt, std::span<const std::uint8_t> frame, std::uint32_t wire_length,
                 PacketTime ts, DecodedPacket& out, DecodeCounters& counters) {
  out = DecodedPacket{};
  out.ts = ts;
  out.wire_length = wire_length;
  FrameDecoder decoder(out, counters, wire_length > frame.size());
  if (!decoder.Link(dlt, frame)) {
    return false;
  }
  if (out.ip_version == 0) {
    return false;
  }
  counters.decoded.Increment();
  if (out.tunnel_depth > 0) {
    counters.tunnelled.Increment();
  }
  return true;
}

}  // namespace relaywatch::decode
