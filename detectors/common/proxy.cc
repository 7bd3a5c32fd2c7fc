#include "detectors/common/proxy.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include "capture/base/bytes.h"
#include "capture/base/ip_address.h"

namespace relaywatch::detectors {
namespace {

using Bytes = std::span<const std::uint8_t>;

// An HTTP proxy's request or answer head beyond this is not a setup we follow.
constexpr std::size_t kMaxHttpHead = 8192;

// Reads a message front to back; running out of bytes is "incomplete", not a mismatch.
class Reader {
 public:
  explicit Reader(Bytes data) : data_(data) {}
  bool Has(std::size_t n) const { return data_.size() - pos_ >= n; }
  std::uint8_t Byte() { return data_[pos_++]; }
  Bytes Take(std::size_t n) {
    const Bytes out = data_.subspan(pos_, n);
    pos_ += n;
    return out;
  }
  std::size_t pos() const { return pos_; }
  std::uint8_t Peek() const { return data_[pos_]; }

 private:
  Bytes data_;
  std::size_t pos_ = 0;
};

bool IsHostChar(std::uint8_t c) {
  return c > 0x20 && c < 0x7f;
}

std::string HostName(Bytes b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// Addresses print as every address in the events does (RFC 5952 for IPv6).
std::string Ipv4(Bytes b) {
  return IpAddress::FromV4(b.data()).ToString();
}

std::string Ipv6(Bytes b) {
  return IpAddress::FromV6(b.data()).ToString();
}

// RFC 1928 section 5: ATYP, then an IPv4 address, a length-prefixed name or an IPv6
// address, then the port. Returns false on a mismatch; `r` runs out on an incomplete one.
bool SocksAddress(Reader& r, std::string* host, std::uint16_t* port, bool* ran_out) {
  if (!r.Has(1)) {
    *ran_out = true;
    return false;
  }
  const std::uint8_t type = r.Byte();
  std::size_t n = 0;
  if (type == 1) {
    n = 4;
  } else if (type == 4) {
    n = 16;
  } else if (type == 3) {
    if (!r.Has(1)) {
      *ran_out = true;
      return false;
    }
    n = r.Byte();
    if (n == 0) {
      return false;
    }
  } else {
    return false;
  }
  if (!r.Has(n + 2)) {
    *ran_out = true;
    return false;
  }
  const Bytes address = r.Take(n);
  if (type == 3 && !std::all_of(address.begin(), address.end(), IsHostChar)) {
    return false;
  }
  if (host != nullptr) {
    *host = type == 1 ? Ipv4(address) : type == 4 ? Ipv6(address) : HostName(address);
  }
  const Bytes p = r.Take(2);
  *port = Be16(p.data());
  return true;
}

std::optional<ProxyRequest> Socks5Request(Bytes data, bool* incomplete) {
  Reader r(data);
  r.Byte();  // version 5
  if (!r.Has(1)) {
    *incomplete = true;
    return std::nullopt;
  }
  const std::size_t n_methods = r.Byte();
  if (n_methods == 0) {
    return std::nullopt;
  }
  if (!r.Has(n_methods)) {
    *incomplete = true;
    return std::nullopt;
  }
  const Bytes methods = r.Take(n_methods);
  if (std::find(methods.begin(), methods.end(), 0xff) != methods.end()) {
    return std::nullopt;  // "no acceptable methods" is the server's word only
  }
  if (!r.Has(1)) {
    *incomplete = true;  // the client waits for the method selection
    return std::nullopt;
  }
  // RFC 1929 username/password (version 1), when the client offered it.
  if (r.Peek() == 0x01 && std::find(methods.begin(), methods.end(), 0x02) != methods.end()) {
    r.Byte();
    for (int field = 0; field < 2; ++field) {
      if (!r.Has(1)) {
        *incomplete = true;
        return std::nullopt;
      }
      const std::size_t len = r.Byte();
      if (len == 0 && field == 0) {
        return std::nullopt;
      }
      if (!r.Has(len)) {
        *incomplete = true;
        return std::nullopt;
      }
      r.Take(len);
    }
  }
  // Request: version, CONNECT, reserved 0, destination.
  if (!r.Has(3)) {
    *incomplete = true;
    return std::nullopt;
  }
  if (r.Byte() != 5 || r.Byte() != 1 || r.Byte() != 0) {
    return std::nullopt;
  }
  ProxyRequest request;
  request.protocol = ProxyProtocol::kSocks5;
  bool ran_out = false;
  if (!SocksAddress(r, &request.target, &request.target_port, &ran_out)) {
    *incomplete = ran_out;
    return std::nullopt;
  }
  if (request.target_port == 0) {
    return std::nullopt;
  }
  request.length = r.pos();
  return request;
}

// A NUL-terminated printable string of at most 255 bytes (SOCKS 4 user id, 4a host name).
bool NulString(Reader& r, std::string* out, bool* ran_out) {
  for (std::size_t n = 0; n <= 255; ++n) {
    if (!r.Has(1)) {
      *ran_out = true;
      return false;
    }
    const std::uint8_t c = r.Byte();
    if (c == 0) {
      return true;
    }
    if (!IsHostChar(c) && c != ' ') {
      return false;
    }
    if (out != nullptr) {
      out->push_back(static_cast<char>(c));
    }
  }
  return false;
}

std::optional<ProxyRequest> Socks4Request(Bytes data, bool* incomplete) {
  if (data.size() < 8) {
    // Version 4, CONNECT, then port and address.
    *incomplete = data.size() < 2 || data[1] == 1;
    return std::nullopt;
  }
  Reader r(data);
  r.Byte();
  if (r.Byte() != 1) {
    return std::nullopt;
  }
  const Bytes port = r.Take(2);
  const Bytes ip = r.Take(4);
  ProxyRequest request;
  request.protocol = ProxyProtocol::kSocks4;
  request.target_port = Be16(port.data());
  const bool socks4a = ip[0] == 0 && ip[1] == 0 && ip[2] == 0;
  if (request.target_port == 0 || (socks4a && ip[3] == 0)) {
    return std::nullopt;
  }
  bool ran_out = false;
  if (!NulString(r, nullptr, &ran_out)) {
    *incomplete = ran_out;
    return std::nullopt;
  }
  if (socks4a) {
    if (!NulString(r, &request.target, &ran_out) || request.target.empty()) {
      *incomplete = ran_out;
      return std::nullopt;
    }
  } else {
    request.target = Ipv4(ip);
  }
  request.length = r.pos();
  return request;
}

// A header line holds no control character but tab (RFC 9110 5.5).
bool HasControlCharacter(std::string_view line) {
  return std::any_of(line.begin(), line.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

// An HTTP message head: its lines (CR LF or LF ended) up to the empty one. Returns the head's
// length, 0 with `incomplete` while it may still end, or 0 when a line is not text.
std::size_t HttpHead(std::string_view text, std::string_view* first_line, bool* incomplete) {
  std::size_t pos = 0;
  bool first = true;
  while (true) {
    const std::size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) {
      *incomplete = text.size() < kMaxHttpHead;
      return 0;
    }
    std::string_view line = text.substr(pos, eol - pos);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (eol + 1 > kMaxHttpHead || HasControlCharacter(line)) {
      return 0;
    }
    pos = eol + 1;
    if (first) {
      *first_line = line;
      first = false;
    } else if (line.empty()) {
      return pos;
    }
  }
}

std::string_view Text(Bytes data) {
  return {reinterpret_cast<const char*>(data.data()), data.size()};
}

// "HTTP/1.0" or "HTTP/1.1".
bool IsHttp1Version(std::string_view v) {
  return v.size() == 8 && v.substr(0, 7) == "HTTP/1." && absl::ascii_isdigit(v[7]);
}

std::optional<ProxyRequest> HttpConnectRequest(Bytes data, bool* incomplete) {
  std::string_view line;
  const std::size_t length = HttpHead(Text(data), &line, incomplete);
  if (length == 0) {
    return std::nullopt;
  }
  // CONNECT authority-form HTTP/1.x (RFC 9112 3.2.3): host:port, an IPv6 host in brackets.
  // Some clients put more before the version ("CONNECT host:25 / HTTP/1.0", a spam bot in
  // Zeek's connect-with-smtp.pcap), which proxies grant: the authority is the first word.
  const std::size_t sp = line.rfind(' ');
  if (sp == std::string_view::npos || sp < 8 || !IsHttp1Version(line.substr(sp + 1))) {
    return std::nullopt;
  }
  const std::string_view words = line.substr(8, sp - 8);
  const std::string_view authority = words.substr(0, words.find(' '));
  const std::size_t colon = authority.rfind(':');
  if (colon == std::string_view::npos || colon == 0 ||
      !std::all_of(authority.begin(), authority.end(),
                   [](char c) { return IsHostChar(static_cast<std::uint8_t>(c)); })) {
    return std::nullopt;
  }
  std::string_view host = authority.substr(0, colon);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') {
      return std::nullopt;
    }
    host = host.substr(1, host.size() - 2);
  }
  const std::string_view digits = authority.substr(colon + 1);
  std::uint32_t port = 0;
  // SimpleAtoi also takes signs and blanks ("+80", " 80"); a port is digits only.
  if (digits.empty() || digits.size() > 5 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return absl::ascii_isdigit(c); }) ||
      !absl::SimpleAtoi(absl::string_view(digits.data(), digits.size()), &port) || port == 0 ||
      port > 65535) {
    return std::nullopt;
  }
  ProxyRequest request;
  request.protocol = ProxyProtocol::kHttpConnect;
  // An address literal prints as the SOCKS forms and the events' own addresses do.
  const absl::StatusOr<IpAddress> address =
      IpAddress::Parse(absl::string_view(host.data(), host.size()));
  request.target = address.ok() ? address->ToString() : std::string(host);
  request.target_port = static_cast<std::uint16_t>(port);
  request.length = length;
  return request;
}

}  // namespace

std::string_view ProxyProtocolName(ProxyProtocol protocol) {
  switch (protocol) {
    case ProxyProtocol::kSocks4:
      return "socks4";
    case ProxyProtocol::kSocks5:
      return "socks5";
    case ProxyProtocol::kHttpConnect:
      return "http_connect";
  }
  return "";
}

std::optional<ProxyRequest> ParseProxyRequest(Bytes client, bool* incomplete) {
  *incomplete = false;
  if (client.empty()) {
    *incomplete = true;
    return std::nullopt;
  }
  switch (client[0]) {
    case 5:
      return Socks5Request(client, incomplete);
    case 4:
      return Socks4Request(client, incomplete);
    case 'C': {
      constexpr std::string_view kMethod = "CONNECT ";
      const std::string_view text = Text(client);
      if (text.substr(0, kMethod.size()) != kMethod.substr(0, text.size())) {
        return std::nullopt;
      }
      if (text.size() < kMethod.size()) {
        *incomplete = true;
        return std::nullopt;
      }
      return HttpConnectRequest(client, incomplete);
    }
    default:
      return std::nullopt;
  }
}

std::optional<ProxySetup> TakeProxySetup(std::string& client, std::string& proxy,
                                         ProxySetupWait* wait) {
  const auto view = [](const std::string& s) {
    return Bytes(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  };
  *wait = ProxySetupWait::kNone;
  bool incomplete = false;
  std::optional<ProxyRequest> request = ParseProxyRequest(view(client), &incomplete);
  if (!request) {
    *wait = incomplete ? ProxySetupWait::kRequest : ProxySetupWait::kNone;
    return std::nullopt;
  }
  const std::optional<ProxyReply> reply =
      ParseProxyReply(request->protocol, view(proxy), &incomplete);
  if (!reply) {
    *wait = incomplete ? ProxySetupWait::kReply : ProxySetupWait::kNone;
    return std::nullopt;
  }
  client.erase(0, request->length);
  proxy.erase(0, reply->length);
  return ProxySetup{std::move(*request), reply->granted};
}

bool ProxySetupReader::MayStart(Bytes first_client_segment) {
  bool incomplete = false;
  return ParseProxyRequest(first_client_segment, &incomplete).has_value() || incomplete;
}

ProxySetupReader::State ProxySetupReader::Feed(const decode::DecodedPacket& p, bool client) {
  if (state_ != State::kReading) {
    return state_;
  }
  const int side = client ? 0 : 1;
  bool segment_start = false;
  bool gap = false;
  const Bytes fresh = cursor_[side].Next(p, segment_start, gap);
  // A setup is read whole or not at all.
  if (gap || p.payload.size() < p.payload_length ||
      bytes_[side].size() + fresh.size() > 2 * kMaxHttpHead) {
    state_ = State::kNone;
    return state_;
  }
  bytes_[side].append(reinterpret_cast<const char*>(fresh.data()), fresh.size());
  while (true) {
    ProxySetupWait wait = ProxySetupWait::kNone;
    std::optional<ProxySetup> setup = TakeProxySetup(bytes_[0], bytes_[1], &wait);
    if (!setup) {
      state_ = wait == ProxySetupWait::kNone ? State::kNone : State::kReading;
      return state_;
    }
    if (setup->granted) {
      request_ = std::move(setup->request);
      state_ = State::kTunnel;
      return state_;
    }
    // After a 407 an HTTP client may ask again on the same connection.
    if (setup->request.protocol != ProxyProtocol::kHttpConnect || ++refusals_ >= 2) {
      state_ = State::kNone;
      return state_;
    }
  }
}

Bytes ProxySetupReader::tunnel_start(bool client) const {
  const std::string& s = bytes_[client ? 0 : 1];
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::optional<ProxyReply> ParseProxyReply(ProxyProtocol protocol, Bytes proxy, bool* incomplete) {
  *incomplete = false;
  Reader r(proxy);
  ProxyReply reply;
  switch (protocol) {
    case ProxyProtocol::kSocks4:
      // Version 0 (some servers echo 4), then 90 granted or 91..93 refused, port, address.
      if (proxy.size() < 8) {
        *incomplete = proxy.empty() || ((proxy[0] == 0 || proxy[0] == 4) &&
                                        (proxy.size() < 2 || (proxy[1] >= 90 && proxy[1] <= 93)));
        return std::nullopt;
      }
      if ((proxy[0] != 0 && proxy[0] != 4) || proxy[1] < 90 || proxy[1] > 93) {
        return std::nullopt;
      }
      reply.granted = proxy[1] == 90;
      reply.length = 8;
      return reply;
    case ProxyProtocol::kSocks5: {
      // Method selection, the RFC 1929 status when that method was chosen, then the reply.
      if (!r.Has(2)) {
        *incomplete = proxy.empty() || proxy[0] == 5;
        return std::nullopt;
      }
      if (r.Byte() != 5) {
        return std::nullopt;
      }
      const std::uint8_t method = r.Byte();
      if (method == 0xff) {
        reply.length = 2;
        return reply;  // no acceptable method: refused
      }
      if (method == 0x02) {
        if (!r.Has(2)) {
          *incomplete = true;
          return std::nullopt;
        }
        if (r.Byte() != 1) {
          return std::nullopt;
        }
        if (r.Byte() != 0) {
          reply.length = 4;
          return reply;  // authentication failed; the server closes
        }
      } else if (method != 0x00) {
        return std::nullopt;  // GSSAPI and others encapsulate what follows
      }
      if (!r.Has(3)) {
        *incomplete = true;
        return std::nullopt;
      }
      if (r.Byte() != 5) {
        return std::nullopt;
      }
      const std::uint8_t status = r.Byte();
      if (r.Byte() != 0 || status > 8) {
        return std::nullopt;
      }
      std::uint16_t port = 0;
      bool ran_out = false;
      if (!SocksAddress(r, nullptr, &port, &ran_out)) {
        *incomplete = ran_out;
        return std::nullopt;
      }
      reply.granted = status == 0;
      reply.length = r.pos();
      return reply;
    }
    case ProxyProtocol::kHttpConnect: {
      std::string_view line;
      const std::size_t length = HttpHead(Text(proxy), &line, incomplete);
      if (length == 0) {
        // Only wait for a head that starts like a status line.
        constexpr std::string_view kVersion = "HTTP/1.";
        const std::string_view text = Text(proxy);
        *incomplete = *incomplete && text.substr(0, kVersion.size()) ==
                                         kVersion.substr(0, std::min(text.size(), kVersion.size()));
        return std::nullopt;
      }
      // Status line: HTTP/1.x SP 3-digit code [SP reason].
      if (line.size() < 12 || !IsHttp1Version(line.substr(0, 8)) || line[8] != ' ' ||
          !std::all_of(line.begin() + 9, line.begin() + 12,
                       [](char c) { return absl::ascii_isdigit(c); }) ||
          (line.size() > 12 && line[12] != ' ')) {
        return std::nullopt;
      }
      reply.granted = line[9] == '2';
      reply.length = length;
      return reply;
    }
  }
  return std::nullopt;
}

}  // namespace relaywatch::detectors
