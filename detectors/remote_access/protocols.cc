#include "detectors/remote_access/protocols.h"

#include <algorithm>
#include <string_view>

#include "capture/base/bytes.h"

namespace relaywatch::detectors::remote_access {
namespace {

constexpr std::size_t kMaxSshLine = 255;  // RFC 4253: at most 255 characters incl. CR LF

// A line a server may send before its identification (RFC 4253 4.2: UTF-8 text): no control
// character but tab.
bool IsTextLine(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

bool IsPrintableAscii(std::string_view s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7e) {
      return false;
    }
  }
  return true;
}

bool IsDigit(std::uint8_t c) {
  return c >= '0' && c <= '9';
}

// TPKT (RFC 1006) header + X.224 fixed part common to CR and CC. Returns the variable
// part, or nullopt when the layout is not an X.224 connection TPDU of type `code`.
std::optional<Bytes> X224Body(Bytes data, std::uint8_t code) {
  // TPKT: version 3, reserved 0, length (incl. header). X.224: length indicator = TPDU
  // length minus the LI byte, then code, DST-REF(2), SRC-REF(2), class option.
  if (data.size() < 11 || data[0] != 0x03 || data[1] != 0x00) {
    return std::nullopt;
  }
  const std::size_t tpkt_length = Be16(data.data() + 2);
  if (tpkt_length < 11 || tpkt_length > data.size()) {
    return std::nullopt;
  }
  const std::size_t li = data[4];
  if (li != tpkt_length - 5 || (data[5] & 0xf0) != code || (data[5] & 0x0f) != 0) {
    return std::nullopt;
  }
  return data.subspan(11, tpkt_length - 11);
}

}  // namespace

std::optional<SshBanner> ParseSshBanner(Bytes data, bool* incomplete, std::size_t* preamble_bytes) {
  if (incomplete) {
    *incomplete = false;
  }
  if (preamble_bytes) {
    *preamble_bytes = 0;
  }
  const std::string_view all(reinterpret_cast<const char*>(data.data()), data.size());
  std::string_view text = all;
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    constexpr std::string_view kPrefix = "SSH-";
    const bool is_banner =
        kPrefix.substr(0, std::min(kPrefix.size(), text.size())) == text.substr(0, kPrefix.size());
    if (eol == std::string_view::npos) {
      // A partial line: wait for more only when it can still become a banner.
      if (incomplete && is_banner && text.size() < kMaxSshLine) {
        *incomplete = true;
      }
      return std::nullopt;
    }
    std::string_view l = text.substr(0, eol);
    if (!l.empty() && l.back() == '\r') {
      l.remove_suffix(1);
    }
    if (eol + 1 > kMaxSshLine || !(is_banner ? IsPrintableAscii(l) : IsTextLine(l))) {
      return std::nullopt;
    }
    if (is_banner) {
      const std::string_view rest = l.substr(4);
      const std::size_t dash = rest.find('-');
      if (dash == std::string_view::npos || dash == 0) {
        return std::nullopt;
      }
      SshBanner banner;
      banner.proto_version = std::string(rest.substr(0, dash));
      // Protocol versions are "1.x", "2.0" or "1.99": digits and one dot.
      if (banner.proto_version.size() > 4 || !IsDigit(banner.proto_version[0]) ||
          banner.proto_version.find('.') != 1) {
        return std::nullopt;
      }
      std::string_view software = rest.substr(dash + 1);
      const std::size_t space = software.find(' ');
      if (space != std::string_view::npos) {
        banner.comments = std::string(software.substr(space + 1));
        software = software.substr(0, space);
      }
      if (software.empty()) {
        return std::nullopt;
      }
      banner.software = std::string(software);
      return banner;
    }
    text.remove_prefix(eol + 1);
    if (preamble_bytes) {
      *preamble_bytes = all.size() - text.size();
    }
  }
  return std::nullopt;
}

std::optional<RdpConnectionRequest> ParseRdpConnectionRequest(Bytes data) {
  std::optional<Bytes> body = X224Body(data, 0xe0);
  if (!body) {
    return std::nullopt;
  }
  // CR: DST-REF must be 0 (MS-RDPBCGR 2.2.1.1); class 0.
  if (data[6] != 0 || data[7] != 0 || data[10] != 0) {
    return std::nullopt;
  }
  RdpConnectionRequest request;
  Bytes rest = *body;
  std::string_view text(reinterpret_cast<const char*>(rest.data()), rest.size());
  // The variable part is a cookie or routing token ended by CR LF, then optionally an
  // 8-byte RDP_NEG_REQ, then optionally RDP_NEG_CORRELATION_INFO. ISO transport users such
  // as S7comm put parameter codes (0xc0-0xc2) here instead; those do not match.
  if (text.substr(0, 8) == "Cookie: ") {
    const std::size_t crlf = text.find("\r\n");
    if (crlf == std::string_view::npos || !IsPrintableAscii(text.substr(0, crlf))) {
      return std::nullopt;
    }
    const std::string_view value = text.substr(8, crlf - 8);
    if (value.substr(0, 9) == "mstshash=") {
      request.cookie = std::string(value.substr(9));
    } else {
      request.has_routing_token = true;
    }
    rest = rest.subspan(crlf + 2);
  }
  if (!rest.empty()) {
    // TYPE_RDP_NEG_REQ (1), flags, length 8 (LE), requestedProtocols (LE).
    if (rest.size() < 8 || rest[0] != 0x01 || Le16(rest.data() + 2) != 8) {
      return std::nullopt;
    }
    request.has_negotiation = true;
    request.requested_protocols = Le32(rest.data() + 4);
    rest = rest.subspan(8);
    // TYPE_RDP_CORRELATION_INFO (6), 36 bytes, may follow when flag 0x08 is set.
    if (!rest.empty() && !(rest.size() == 36 && rest[0] == 0x06)) {
      return std::nullopt;
    }
  }
  return request;
}

std::optional<RdpConnectionConfirm> ParseRdpConnectionConfirm(Bytes data) {
  std::optional<Bytes> body = X224Body(data, 0xd0);
  if (!body) {
    return std::nullopt;
  }
  RdpConnectionConfirm confirm;
  if (body->empty()) {
    return confirm;
  }
  // RDP_NEG_RSP (2) or RDP_NEG_FAILURE (3): type, flags, length 8, value.
  const Bytes b = *body;
  if (b.size() != 8 || (b[0] != 0x02 && b[0] != 0x03) || Le16(b.data() + 2) != 8) {
    return std::nullopt;
  }
  confirm.has_negotiation = true;
  confirm.failure = b[0] == 0x03;
  confirm.selected_protocol = Le32(b.data() + 4);
  return confirm;
}

std::string RdpProtocolNames(std::uint32_t protocols) {
  if (protocols == 0) {
    return "rdp";
  }
  static constexpr std::pair<std::uint32_t, std::string_view> kNames[] = {
      {0x01, "ssl"}, {0x02, "hybrid"}, {0x04, "rdstls"}, {0x08, "hybrid_ex"}, {0x10, "rdsaad"}};
  std::string out;
  for (const auto& [bit, name] : kNames) {
    if (protocols & bit) {
      if (!out.empty()) {
        out += ',';
      }
      out += name;
    }
  }
  if (protocols & ~0x1fU) {
    out += out.empty() ? "other" : ",other";
  }
  return out;
}

std::optional<RfbVersion> ParseRfbVersion(Bytes data) {
  // "RFB 003.008\n": the server speaks first with exactly these 12 bytes.
  if (data.size() != 12 || data[0] != 'R' || data[1] != 'F' || data[2] != 'B' || data[3] != ' ' ||
      data[7] != '.' || data[11] != '\n') {
    return std::nullopt;
  }
  for (int i : {4, 5, 6, 8, 9, 10}) {
    if (!IsDigit(data[i])) {
      return std::nullopt;
    }
  }
  RfbVersion v;
  v.major = (data[4] - '0') * 100 + (data[5] - '0') * 10 + (data[6] - '0');
  v.minor = (data[8] - '0') * 100 + (data[9] - '0') * 10 + (data[10] - '0');
  if (v.major == 0) {
    return std::nullopt;
  }
  return v;
}

std::optional<RfbClientMessages> ParseRfbClientMessages(Bytes data) {
  if (data.empty())
    return std::nullopt;
  RfbClientMessages messages;
  std::size_t at = 0;
  while (at < data.size()) {
    const Bytes rest = data.subspan(at);
    std::size_t length = 0;
    switch (rest[0]) {
      case 0:  // SetPixelFormat
        length = 20;
        break;
      case 2:  // SetEncodings: a count of 4-byte encodings
        if (rest.size() < 4)
          return std::nullopt;
        length = 4 + 4 * (std::size_t{rest[2]} << 8 | rest[3]);
        break;
      case 3:  // FramebufferUpdateRequest: incremental flag, x, y, width, height
        length = 10;
        messages.update_request = true;  // if cut, nothing is returned
        break;
      case 4:  // KeyEvent
        length = 8;
        messages.input = true;
        break;
      case 5:  // PointerEvent
        length = 6;
        messages.input = true;
        break;
      case 6:  // ClientCutText: 3 padding bytes, a 4-byte length, the text
        if (rest.size() < 8)
          return std::nullopt;
        length = 8 + (std::size_t{rest[4]} << 24 | std::size_t{rest[5]} << 16 |
                      std::size_t{rest[6]} << 8 | rest[7]);
        messages.input = true;
        break;
      default:
        return std::nullopt;
    }
    if (length > rest.size())
      return std::nullopt;
    at += length;
  }
  return messages;
}

std::optional<RdpUdpSyn> ParseRdpUdpSyn(Bytes data) {
  // RDPUDP_FEC_HEADER: snSourceAck(4), uReceiveWindowSize(2), uFlags(2); then
  // RDPUDP_SYNDATA_PAYLOAD: snInitialSequenceNumber(4), uUpStreamMtu(2), uDownStreamMtu(2).
  constexpr std::uint16_t kSyn = 0x0001;
  constexpr std::uint16_t kAck = 0x0004;
  if (data.size() < 16) {
    return std::nullopt;
  }
  const std::uint16_t flags = Be16(data.data() + 6);
  if ((flags & kSyn) == 0) {
    return std::nullopt;
  }
  RdpUdpSyn syn;
  syn.ack = (flags & kAck) != 0;
  syn.source_ack = static_cast<std::uint32_t>(Be16(data.data())) << 16 | Be16(data.data() + 2);
  syn.initial_sequence =
      static_cast<std::uint32_t>(Be16(data.data() + 8)) << 16 | Be16(data.data() + 10);
  syn.upstream_mtu = Be16(data.data() + 12);
  syn.downstream_mtu = Be16(data.data() + 14);
  const auto mtu_ok = [](std::uint16_t m) {
    return m >= 1132 && m <= 1232;
  };
  if (!mtu_ok(syn.upstream_mtu) || !mtu_ok(syn.downstream_mtu)) {
    return std::nullopt;
  }
  // The client's SYN acknowledges nothing yet.
  if (!syn.ack && syn.source_ack != 0xffffffffU) {
    return std::nullopt;
  }
  return syn;
}

std::optional<RdpUdpDatagram> ParseRdpUdpDatagram(Bytes data) {
  constexpr std::uint16_t kSyn = 0x0001;
  constexpr std::uint16_t kAck = 0x0004;
  constexpr std::uint16_t kData = 0x0008;
  constexpr std::uint16_t kFec = 0x0010;
  constexpr std::uint16_t kAckOfAcks = 0x0100;
  constexpr std::uint16_t kKnownFlags = 0x1fff;
  constexpr std::size_t kMaxAckVector = 2048;  // MS-RDPEUDP 2.2.2.7: uAckVectorSize < 2048
  if (data.size() < 12) {
    return std::nullopt;
  }
  RdpUdpDatagram d;
  d.source_ack = static_cast<std::uint32_t>(Be16(data.data())) << 16 | Be16(data.data() + 2);
  d.flags = Be16(data.data() + 6);
  if ((d.flags & kAck) == 0 || (d.flags & kSyn) != 0 || (d.flags & ~kKnownFlags) != 0) {
    return std::nullopt;
  }
  // RDPUDP_ACK_VECTOR_HEADER: uAckVectorSize(2) + elements, padded to a 4-byte boundary.
  const std::size_t vector_size = Be16(data.data() + 8);
  if (vector_size >= kMaxAckVector) {
    return std::nullopt;
  }
  std::size_t offset = 8 + ((2 + vector_size + 3) & ~std::size_t{3});
  if ((d.flags & kAckOfAcks) != 0) {
    offset += 4;  // RDPUDP_ACK_OF_ACKVECTOR_HEADER
  }
  if (offset > data.size()) {
    return std::nullopt;
  }
  if ((d.flags & kData) != 0 && (d.flags & kFec) == 0) {
    // RDPUDP_SOURCE_PAYLOAD_HEADER: snCoded(4), snSourceStart(4).
    if (offset + 8 > data.size()) {
      return std::nullopt;
    }
    d.has_data = true;
    d.sn_coded = static_cast<std::uint32_t>(Be16(data.data() + offset)) << 16 |
                 Be16(data.data() + offset + 2);
  }
  return d;
}

int TeamViewerTcpFrames(Bytes stream) {
  int frames = 0;
  std::size_t at = 0;
  while (at + 2 <= stream.size()) {
    const Bytes rest = stream.subspan(at);
    std::size_t frame_size = 0;
    if (rest[0] == 0x17 && rest[1] == 0x24) {
      if (rest.size() < 5) {
        break;  // header not complete yet
      }
      frame_size = 5 + std::size_t{Le16(rest.data() + 3)};
    } else if (rest[0] == 0x11 && rest[1] == 0x30) {
      if (rest.size() < 8) {
        break;
      }
      const std::uint32_t length = Le32(rest.data() + 4);
      if (length > (1U << 24)) {
        return 0;
      }
      frame_size = 24 + std::size_t{length};
    } else {
      return 0;  // the bytes where a frame must start are not a frame
    }
    if (at + frame_size > stream.size()) {
      break;  // the frame continues past what we hold
    }
    at += frame_size;
    ++frames;
  }
  return frames;
}

bool IsTeamViewerUdp(Bytes d) {
  return d.size() >= 16 && d[11] == 0x17 && d[12] == 0x24 &&
         16 + std::size_t{Le16(d.data() + 14)} == d.size();
}

NxGreeting ParseNxGreeting(Bytes data) {
  std::string_view text(reinterpret_cast<const char*>(data.data()), data.size());
  NxGreeting kind = NxGreeting::kNone;
  if (text.substr(0, 5) == "NXSH-") {
    kind = NxGreeting::kClient;
    text.remove_prefix(5);
  } else if (text.substr(0, 4) == "NXD-") {
    kind = NxGreeting::kServer;
    text.remove_prefix(4);
  } else {
    return NxGreeting::kNone;
  }
  const std::size_t eol = text.find('\n');
  if (eol == std::string_view::npos || eol == 0 || eol > 16) {
    return NxGreeting::kNone;
  }
  for (char c : text.substr(0, eol)) {
    if (!(IsDigit(static_cast<std::uint8_t>(c)) || c == '.')) {
      return NxGreeting::kNone;
    }
  }
  return kind;
}

int NxUdpCounter(Bytes d) {
  if (d.size() < 10 || d[0] == 0 || d[0] > 0x10 || d[1] != 0 || Le16(d.data() + 2) != 1 ||
      Le16(d.data() + 4) != d.size() || d[8] != 0 || d[9] != 0) {
    return -1;
  }
  return Le16(d.data() + 6);
}

RadminMessage ParseRadmin(Bytes d) {
  if (d.size() < 10 || d[0] != 0x01 || d[1] != 0 || d[2] != 0 || d[3] != 0) {
    return RadminMessage::kNone;
  }
  if (d.size() == 10 && d[4] == 0x01 && d[8] == 0x08 && d[9] == 0x08) {
    return RadminMessage::kClientHello;
  }
  if (d.size() == 46 && d[4] == 0x25 && d[7] == 0x02 && d[8] == 0x12 && d[9] == 0x08 &&
      d[10] == 0x02 && d[13] == 0x0a) {
    return RadminMessage::kServerHello;
  }
  if (d.size() == 14 && d[4] == 0x05 && d[8] == 0x27 && d[9] == 0x27) {
    return RadminMessage::kResume;
  }
  return RadminMessage::kNone;
}

bool IsIcaGreeting(Bytes d) {
  static constexpr std::uint8_t kIca[] = {0x7f, 0x7f, 'I', 'C', 'A', 0x00};
  return d.size() >= sizeof kIca && std::equal(kIca, kIca + sizeof kIca, d.begin());
}

bool IsCgpGreeting(Bytes d) {
  static constexpr std::uint8_t kCgp[] = {0x1a, 'C', 'G', 'P', '/', '0', '1'};
  return d.size() >= sizeof kCgp && std::equal(kCgp, kCgp + sizeof kCgp, d.begin());
}

}  // namespace relaywatch::detectors::remote_access
