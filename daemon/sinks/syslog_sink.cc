#include "daemon/sinks/syslog_sink.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

#include "capture/base/ip_address.h"
#include "daemon/sinks/event_json.h"

namespace relaywatch::sinks {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr milliseconds kInitialBackoff{500};
constexpr seconds kMaxBackoff{30};
constexpr milliseconds kConnectTimeout{2000};
constexpr seconds kSendTimeout{2};
// RFC 5426 section 3.2: receivers should accept 2048-octet datagrams; larger ones may be
// truncated or dropped by the collector.
constexpr std::size_t kMaxUdpMessageBytes = 2048;
// RFC 5424 section 6 header field limits.
constexpr std::size_t kMaxHostnameBytes = 255;
constexpr std::size_t kMaxAppNameBytes = 48;
constexpr std::size_t kMaxMsgIdBytes = 32;
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

struct FacilityName {
  std::string_view name;
  int code;
};
// The names of <syslog.h> and rsyslog, with RFC 5424 table 1 codes.
constexpr FacilityName kFacilities[] = {
    {"kern", 0},      {"user", 1},    {"mail", 2},    {"daemon", 3},  {"auth", 4},
    {"syslog", 5},    {"lpr", 6},     {"news", 7},    {"uucp", 8},    {"cron", 9},
    {"authpriv", 10}, {"ftp", 11},    {"local0", 16}, {"local1", 17}, {"local2", 18},
    {"local3", 19},   {"local4", 20}, {"local5", 21}, {"local6", 22}, {"local7", 23},
};

std::optional<int> FacilityCode(std::string_view name) {
  for (const FacilityName& f : kFacilities) {
    if (f.name == name) {
      return f.code;
    }
  }
  return std::nullopt;
}

// RFC 5424 header fields are PRINTUSASCII (33..126): no spaces, no controls.
bool IsPrintUsAscii(char c) {
  return c >= 33 && c <= 126;
}

struct HostPort {
  std::string host;
  std::string port;
};

// absl::string_view, not std::string_view: Debian builds Abseil with its own string_view
// type, which StrCat and SimpleAtoi take and std::string_view does not convert to.
absl::StatusOr<HostPort> ParseAddress(absl::string_view address) {
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("syslog.address '", address, "': ", why, " (want host:port or [v6]:port)"));
  };
  HostPort hp;
  absl::string_view port;
  if (!address.empty() && address.front() == '[') {
    const std::size_t close = address.find(']');
    if (close == absl::string_view::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return bad("unterminated [ or missing :port");
    }
    hp.host = static_cast<std::string>(address.substr(1, close - 1));
    port = address.substr(close + 2);
    const absl::StatusOr<IpAddress> ip = IpAddress::Parse(hp.host);
    if (!ip.ok() || !ip->is_v6()) {
      return bad("brackets must hold an IPv6 address");
    }
  } else {
    const std::size_t colon = address.rfind(':');
    if (colon == absl::string_view::npos) {
      return bad("missing :port");
    }
    hp.host = static_cast<std::string>(address.substr(0, colon));
    port = address.substr(colon + 1);
    if (absl::StrContains(hp.host, ':')) {
      return bad("IPv6 addresses need brackets");
    }
  }
  if (hp.host.empty() ||
      !std::all_of(hp.host.begin(), hp.host.end(), [](char c) { return IsPrintUsAscii(c); })) {
    return bad("empty or invalid host");
  }
  int port_number = 0;
  if (port.empty() || !std::all_of(port.begin(), port.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(port, &port_number) || port_number < 1 || port_number > 65535) {
    return bad("port must be 1..65535");
  }
  hp.port = static_cast<std::string>(port);
  return hp;
}

// Appends `in` as valid UTF-8: invalid sequences become U+FFFD (RFC 5424 requires UTF-8 in
// PARAM-VALUE and MSG, and packet-derived text may be anything) and control characters a
// space, because collectors store messages one per line. With `sd_escape`, also applies
// RFC 5424 section 6.3.3: '"', '\' and ']' get a backslash.
void AppendSanitized(std::string& out, std::string_view in, bool sd_escape) {
  std::size_t i = 0;
  while (i < in.size()) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) {
        out.push_back(' ');
      } else {
        if (sd_escape && (c == '"' || c == '\\' || c == ']')) {
          out.push_back('\\');
        }
        out.push_back(static_cast<char>(c));
      }
      ++i;
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0;
    std::uint32_t min = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    }
    bool ok = len != 0 && i + len <= in.size();
    for (std::size_t k = 1; ok && k < len; ++k) {
      const auto cc = static_cast<unsigned char>(in[i + k]);
      ok = (cc & 0xC0) == 0x80;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid UTF-8 (RFC 3629).
    if (!ok || cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      out.append(kReplacementChar);
      ++i;
      continue;
    }
    out.append(in.substr(i, len));
    i += len;
  }
}

// Cuts `s` to at most `max_bytes` without splitting a UTF-8 sequence.
void TruncateUtf8(std::string& s, std::size_t max_bytes) {
  if (s.size() <= max_bytes) {
    return;
  }
  std::size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) {
    --end;
  }
  s.resize(end);
}

std::string HeaderField(std::string_view in, std::size_t max_bytes) {
  std::string out;
  for (char c : in.substr(0, max_bytes)) {
    out.push_back(IsPrintUsAscii(c) ? c : '_');
  }
  return out.empty() ? "-" : out;
}

std::string LocalHostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) {
    return "-";
  }
  return HeaderField(buf, kMaxHostnameBytes);
}

bool HasPorts(std::uint8_t protocol) {
  return protocol == 6 || protocol == 17 || protocol == 132;  // TCP, UDP, SCTP
}

std::string Endpoint(const IpAddress& ip, std::uint16_t port, bool with_port) {
  if (!with_port) {
    return ip.ToString();
  }
  return ip.is_v6() ? absl::StrCat("[", ip.ToString(), "]:", port)
                    : absl::StrCat(ip.ToString(), ":", port);
}

// body["app"] as text, if the body has one.
std::optional<std::string> AppOf(const Event& e) {
  if (!e.body.is_object()) {
    return std::nullopt;
  }
  const auto it = e.body.find("app");
  if (it == e.body.end() || it->is_null()) {
    return std::nullopt;
  }
  if (it->is_string()) {
    return it->get<std::string>();
  }
  return it->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// RFC 5424 severities.
constexpr int kSeverityCrit = 2;
constexpr int kSeverityWarning = 4;
constexpr int kSeverityNotice = 5;
constexpr int kSeverityInfo = 6;

int SyslogSeverity(const Event& e) {
  if (!e.alert.has_value()) {
    return kSeverityInfo;
  }
  if (e.alert->severity <= 1) {
    return kSeverityCrit;
  }
  return e.alert->severity == 2 ? kSeverityWarning : kSeverityNotice;
}

}  // namespace

absl::Status ValidateSyslogConfig(const SyslogConfig& config) {
  if (config.transport != "udp" && config.transport != "tcp") {
    return absl::InvalidArgumentError(
        absl::StrCat("syslog.transport '", config.transport, "' is not one of: udp, tcp"));
  }
  if (absl::StatusOr<HostPort> hp = ParseAddress(config.address); !hp.ok()) {
    return hp.status();
  }
  if (!FacilityCode(config.facility).has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "syslog.facility '", config.facility,
        "' is not one of: kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, "
        "authpriv, ftp, local0..local7"));
  }
  if (config.app_name.empty() || config.app_name.size() > kMaxAppNameBytes ||
      !std::all_of(config.app_name.begin(), config.app_name.end(), IsPrintUsAscii)) {
    return absl::InvalidArgumentError(
        absl::StrCat("syslog.app_name '", config.app_name,
                     "' must be 1..48 printable ASCII characters without spaces"));
  }
  if (config.enterprise_id == 0) {
    return absl::InvalidArgumentError(
        "syslog.enterprise_id must be an IANA private enterprise number (not 0)");
  }
  if (config.max_pending == 0) {
    return absl::InvalidArgumentError("syslog.max_pending must be at least 1");
  }
  return absl::OkStatus();
}

std::string OctetCountedFrame(std::string_view message) {
  return absl::StrCat(message.size(), " ", absl::string_view(message.data(), message.size()));
}

absl::StatusOr<std::unique_ptr<SyslogSink>> SyslogSink::Create(SyslogConfig config) {
  if (absl::Status s = ValidateSyslogConfig(config); !s.ok()) {
    return s;
  }
  absl::StatusOr<HostPort> hp = ParseAddress(config.address);
  const int facility = *FacilityCode(config.facility);
  return std::unique_ptr<SyslogSink>(
      new SyslogSink(std::move(config), facility, std::move(hp->host), std::move(hp->port)));
}

SyslogSink::SyslogSink(SyslogConfig config, int facility, std::string host, std::string port)
    : config_(std::move(config)),
      tcp_(config_.transport == "tcp"),
      facility_(facility),
      host_(std::move(host)),
      port_(std::move(port)),
      hostname_(LocalHostname()),
      procid_(absl::StrCat(::getpid())),
      pending_(config_.max_pending),
      backoff_(kInitialBackoff),
      next_attempt_(Clock::now()) {}

SyslogSink::~SyslogSink() {
  CloseSocket();
}

std::string SyslogSink::FormatMessage(const Event& e) const {
  std::string msgid;
  const std::string_view event_type = e.event_type;
  for (char c : event_type.substr(0, kMaxMsgIdBytes)) {
    msgid.push_back(IsPrintUsAscii(c) ? absl::ascii_toupper(static_cast<unsigned char>(c)) : '_');
  }
  if (msgid.empty()) {
    msgid = "-";
  }
  std::string out = absl::StrCat("<", facility_ * 8 + SyslogSeverity(e), ">1 ",
                                 FormatTimestamp(e.ts), " ", hostname_, " ", config_.app_name, " ",
                                 procid_, " ", msgid, " [relaywatch@", config_.enterprise_id);
  const auto param = [&out](absl::string_view name, std::string_view value) {
    absl::StrAppend(&out, " ", name, "=\"");
    AppendSanitized(out, value, /*sd_escape=*/true);
    out.push_back('"');
  };
  param("event_type", e.event_type);
  if (e.flow.has_value()) {
    const FlowRef& f = *e.flow;
    const bool ports = HasPorts(f.protocol);
    param("flow_id", absl::StrCat(f.flow_id));
    param("src_ip", f.src_ip.ToString());
    if (ports) {
      param("src_port", absl::StrCat(f.src_port));
    }
    param("dest_ip", f.dest_ip.ToString());
    if (ports) {
      param("dest_port", absl::StrCat(f.dest_port));
    }
    param("proto", ProtoName(f.protocol));
    if (!f.community_id.empty()) {
      param("community_id", f.community_id);
    }
  }
  if (e.host_ip.has_value()) {
    param("host_ip", e.host_ip->ToString());
  }
  if (e.alert.has_value()) {
    const AlertInfo& a = *e.alert;
    param("signature_id", absl::StrCat(a.signature_id));
    param("signature", a.signature);
    param("category", a.category);
    param("severity", absl::StrCat(a.severity));
    param("detector", a.detector);
  }
  const std::optional<std::string> app = AppOf(e);
  if (app.has_value()) {
    param("app", *app);
  }
  out.push_back(']');

  // MSG is a one-line summary for people reading the collector; the detail is in the SD
  // and in the EVE log.
  std::string text;
  if (e.alert.has_value() && !e.alert->signature.empty()) {
    text = e.alert->signature;
  } else {
    text = e.event_type;
    if (app.has_value()) {
      absl::StrAppend(&text, " ", *app);
    }
    if (e.flow.has_value()) {
      const bool ports = HasPorts(e.flow->protocol);
      absl::StrAppend(&text, " ", Endpoint(e.flow->src_ip, e.flow->src_port, ports), " -> ",
                      Endpoint(e.flow->dest_ip, e.flow->dest_port, ports));
    } else if (e.host_ip.has_value()) {
      absl::StrAppend(&text, " host ", e.host_ip->ToString());
    }
  }
  std::string msg;
  AppendSanitized(msg, text, /*sd_escape=*/false);
  if (!tcp_) {
    // Only MSG is shortened: the SD is what collectors parse, and a cut SD is unparseable.
    const std::size_t room =
        out.size() + 1 < kMaxUdpMessageBytes ? kMaxUdpMessageBytes - out.size() - 1 : 0;
    TruncateUtf8(msg, room);
  }
  if (!msg.empty()) {
    out.push_back(' ');
    out.append(msg);
  }
  return out;
}

void SyslogSink::Write(const Event& event) {
  if (std::find(config_.events.begin(), config_.events.end(), event.event_type) ==
      config_.events.end()) {
    Bump(filtered_);
    return;
  }
  std::string message = FormatMessage(event);
  Enqueue(tcp_ ? OctetCountedFrame(message) : std::move(message), event.must_deliver());
  Drain();
}

void SyslogSink::Flush() {
  Drain();
}

absl::Status SyslogSink::Reopen() {
  CloseSocket();
  backoff_ = kInitialBackoff;
  next_attempt_ = Clock::now();
  Drain();
  return absl::OkStatus();
}

void SyslogSink::Enqueue(std::string frame, bool alert) {
  if (!pending_.Push(std::move(frame), alert)) {
    Bump(dropped_);
  }
  pending_count_.store(pending_.size(), std::memory_order_relaxed);
}

void SyslogSink::Drain() {
  if (pending_.empty()) {
    return;
  }
  if (fd_ >= 0 && tcp_ && PeerClosed()) {
    // The collector closed the connection (restart). Writing to it would "succeed" once and
    // lose that message to the RST, so reconnect before sending.
    CloseSocket();
  }
  if (fd_ < 0) {
    const Clock::time_point now = Clock::now();
    if (now < next_attempt_) {
      return;
    }
    if (!Connect().ok()) {
      Bump(connect_failures_);
      ScheduleRetry(now);
      return;
    }
    backoff_ = kInitialBackoff;
  }
  while (!pending_.empty()) {
    const HeldMessages::Message& front = pending_.front();
    const int error = SendAll(front.text);
    if (error == EMSGSIZE && !tcp_) {
      // A datagram the kernel will never accept (SD over 64 KiB) would block the queue
      // forever if requeued; it is dropped and counted instead.
      pending_.PopFront();
      Bump(dropped_);
      continue;
    }
    if (error != 0) {
      // The message stays at the front and is sent first on the next connection.
      Bump(send_errors_);
      CloseSocket();
      ScheduleRetry(Clock::now());
      break;
    }
    pending_.PopFront();
    Bump(sent_);
  }
  pending_count_.store(pending_.size(), std::memory_order_relaxed);
}

void SyslogSink::ScheduleRetry(Clock::time_point now) {
  next_attempt_ = now + backoff_;
  backoff_ = std::min<Clock::duration>(backoff_ * 2, kMaxBackoff);
}

absl::Status SyslogSink::Connect() {
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = tcp_ ? SOCK_STREAM : SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* result = nullptr;
  // Resolved on every attempt, so a collector that moved behind its name is found again.
  if (const int rc = ::getaddrinfo(host_.c_str(), port_.c_str(), &hints, &result); rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("syslog: cannot resolve '", host_, "': ", ::gai_strerror(rc)));
  }
  int last_error = 0;
  for (const addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    const int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      last_error = errno;
      continue;
    }
    // Non-blocking connect + poll bounds the wait for a collector that drops SYNs; a
    // blocking connect would hang for the kernel's SYN retry time (about two minutes).
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p = {fd, POLLOUT, 0};
      rc = ::poll(&p, 1, static_cast<int>(kConnectTimeout.count()));
      if (rc == 1) {
        int so_error = 0;
        socklen_t len = sizeof(so_error);
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
        rc = so_error == 0 ? 0 : -1;
        errno = so_error;
      } else {
        if (rc == 0) {
          errno = ETIMEDOUT;
        }
        rc = -1;
      }
    }
    if (rc != 0) {
      last_error = errno;
      ::close(fd);
      continue;
    }
    // Back to blocking sends, each bounded by SO_SNDTIMEO: the output thread may wait for
    // a slow collector but never forever.
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    const timeval tv = {static_cast<time_t>(kSendTimeout.count()), 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    fd_ = fd;
    ::freeaddrinfo(result);
    return absl::OkStatus();
  }
  ::freeaddrinfo(result);
  return absl::ErrnoToStatus(last_error,
                             absl::StrCat("syslog: cannot connect to ", config_.address));
}

bool SyslogSink::PeerClosed() const {
  // A syslog collector never sends data, so a readable socket means EOF or an error.
  pollfd p = {fd_, POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0) {
    return false;
  }
  char byte = 0;
  const ssize_t n = ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

int SyslogSink::SendAll(std::string_view data) const {
  while (!data.empty()) {
    // MSG_NOSIGNAL: a collector that went away must give EPIPE, not kill us with SIGPIPE.
    const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errno;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return 0;
}

void SyslogSink::CloseSocket() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

}  // namespace relaywatch::sinks
