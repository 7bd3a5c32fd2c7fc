#include "daemon/sinks/syslog_sink.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/substitute.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace relaywatch::sinks {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr std::int64_t kUnixSeconds = 1714990272;  // 2024-05-06T10:11:12Z

IpAddress Ip(absl::string_view text) {
  return *IpAddress::Parse(text);
}

Event Alert(std::uint64_t flow_id, int severity = 1,
            std::string signature = "RELAYWATCH remote desktop over TLS") {
  Event e;
  e.event_type = "alert";
  e.ts = absl::FromUnixSeconds(kUnixSeconds) + absl::Microseconds(123456);
  FlowRef f;
  f.flow_id = flow_id;
  f.src_ip = Ip("10.20.30.40");
  f.dest_ip = Ip("203.0.113.7");
  f.src_port = 51515;
  f.dest_port = 443;
  f.protocol = 6;
  f.community_id = "1:JgcSb0lDMYoRj7K4XoYgS8JDZRM=";
  e.flow = f;
  e.host_ip = Ip("10.20.30.40");
  e.alert =
      AlertInfo{9100001, std::move(signature), "Relay / remote access", severity, "remote_access"};
  e.body = {{"app", "rdp"}};
  return e;
}

Event Session(std::uint64_t flow_id) {
  Event e;
  e.event_type = "remote_session";
  e.ts = absl::FromUnixSeconds(kUnixSeconds);
  FlowRef f;
  f.flow_id = flow_id;
  f.src_ip = Ip("10.0.0.1");
  f.dest_ip = Ip("10.0.0.2");
  f.src_port = 40000;
  f.dest_port = 22;
  f.protocol = 6;
  e.flow = f;
  e.body = {{"app", "ssh"}};
  return e;
}

std::unique_ptr<SyslogSink> MakeSink(SyslogConfig config) {
  auto sink = SyslogSink::Create(std::move(config));
  EXPECT_TRUE(sink.ok()) << sink.status();
  return sink.ok() ? std::move(*sink) : nullptr;
}

std::string Hostname() {
  char buf[256] = {};
  ::gethostname(buf, sizeof(buf) - 1);
  return buf;
}

// The SD part of a formatted message: from the first '[' after the header to just before
// " " + msg.
std::string StructuredDataOf(const std::string& message, std::string_view msg) {
  const std::size_t start = message.find(" [relaywatch@");
  return message.substr(start + 1, message.size() - (start + 1) - (msg.size() + 1));
}

// --- (a) Format -------------------------------------------------------------------------

TEST(SyslogFormat, AlertMessageIsRfc5424WithStructuredData) {
  auto sink = MakeSink({.transport = "tcp"});
  ASSERT_NE(sink, nullptr);
  const std::string expected = absl::StrCat(
      "<162>1 2024-05-06T10:11:12.123456Z ", Hostname(), " relaywatch ", ::getpid(),
      " ALERT [relaywatch@32473 event_type=\"alert\" flow_id=\"42\" src_ip=\"10.20.30.40\" "
      "src_port=\"51515\" dest_ip=\"203.0.113.7\" dest_port=\"443\" proto=\"TCP\" "
      "community_id=\"1:JgcSb0lDMYoRj7K4XoYgS8JDZRM=\" host_ip=\"10.20.30.40\" "
      "signature_id=\"9100001\" signature=\"RELAYWATCH remote desktop over TLS\" "
      "category=\"Relay / remote access\" severity=\"1\" detector=\"remote_access\" "
      "app=\"rdp\"] RELAYWATCH remote desktop over TLS");
  EXPECT_EQ(sink->FormatMessage(Alert(42)), expected);
}

TEST(SyslogFormat, PriorityIsFacilityTimesEightPlusMappedSeverity) {
  auto local4 = MakeSink({});
  ASSERT_NE(local4, nullptr);
  // local4 = 20: crit(2), warning(4), notice(5), info(6).
  EXPECT_EQ(local4->FormatMessage(Alert(1, 1)).substr(0, 5), "<162>");
  EXPECT_EQ(local4->FormatMessage(Alert(1, 2)).substr(0, 5), "<164>");
  EXPECT_EQ(local4->FormatMessage(Alert(1, 3)).substr(0, 5), "<165>");
  EXPECT_EQ(local4->FormatMessage(Session(1)).substr(0, 5), "<166>");
  auto kern = MakeSink({.facility = "kern"});
  ASSERT_NE(kern, nullptr);
  EXPECT_EQ(kern->FormatMessage(Alert(1, 1)).substr(0, 4), "<2>1");
  auto daemon = MakeSink({.facility = "daemon"});
  ASSERT_NE(daemon, nullptr);
  EXPECT_EQ(daemon->FormatMessage(Session(1)).substr(0, 5), "<30>1");
}

TEST(SyslogFormat, EscapesQuoteBackslashAndBracketInParamValues) {
  auto sink = MakeSink({});
  ASSERT_NE(sink, nullptr);
  const std::string sig = R"(say "hi" [x] a\b)";
  const std::string message = sink->FormatMessage(Alert(1, 1, sig));
  EXPECT_NE(message.find(R"( signature="say \"hi\" [x\] a\\b" )"), std::string::npos) << message;
  // MSG is free text: no escaping there.
  EXPECT_TRUE(message.ends_with(std::string("] ") + sig)) << message;
}

TEST(SyslogFormat, NonAlertUsesUpperCaseMsgIdAndSummary) {
  auto sink = MakeSink({.events = {"remote_session"}});
  ASSERT_NE(sink, nullptr);
  const std::string message = sink->FormatMessage(Session(7));
  EXPECT_NE(message.find(absl::StrCat(" relaywatch ", ::getpid(), " REMOTE_SESSION [")),
            std::string::npos)
      << message;
  EXPECT_NE(message.find(" app=\"ssh\"]"), std::string::npos) << message;
  EXPECT_EQ(message.find("signature"), std::string::npos);
  EXPECT_EQ(message.find("host_ip"), std::string::npos);
  EXPECT_TRUE(message.ends_with("] remote_session ssh 10.0.0.1:40000 -> 10.0.0.2:22")) << message;
}

TEST(SyslogFormat, IcmpAndIpv6Endpoints) {
  auto sink = MakeSink({});
  ASSERT_NE(sink, nullptr);
  Event icmp = Session(1);
  icmp.flow->protocol = 1;
  std::string message = sink->FormatMessage(icmp);
  EXPECT_EQ(message.find("src_port"), std::string::npos) << message;
  EXPECT_EQ(message.find("dest_port"), std::string::npos) << message;
  EXPECT_NE(message.find("proto=\"ICMP\""), std::string::npos) << message;
  EXPECT_TRUE(message.ends_with("] remote_session ssh 10.0.0.1 -> 10.0.0.2")) << message;

  Event v6 = Session(1);
  v6.flow->src_ip = Ip("2001:db8::1");
  v6.flow->dest_ip = Ip("2001:db8::2");
  message = sink->FormatMessage(v6);
  EXPECT_TRUE(message.ends_with("] remote_session ssh [2001:db8::1]:40000 -> [2001:db8::2]:22"))
      << message;
}

TEST(SyslogFormat, InvalidUtf8AndControlCharactersAreSanitised) {
  auto sink = MakeSink({});
  ASSERT_NE(sink, nullptr);
  Event e = Session(1);
  e.body = {{"app", std::string("a\xff"
                                "b\nc\xc3\xa9")}};
  const std::string message = sink->FormatMessage(e);
  EXPECT_NE(message.find("app=\"a\xEF\xBF\xBD"
                         "b c\xc3\xa9\"]"),
            std::string::npos)
      << message;
  EXPECT_EQ(message.find('\n'), std::string::npos);
}

TEST(SyslogFormat, UdpTruncatesMsgButNeverStructuredData) {
  auto udp = MakeSink({.transport = "udp"});
  ASSERT_NE(udp, nullptr);
  const std::string sig(1500, 's');
  const std::string message = udp->FormatMessage(Alert(1, 1, sig));
  EXPECT_EQ(message.size(), 2048u);
  EXPECT_NE(message.find(absl::StrCat("signature=\"", sig, "\"")), std::string::npos);

  // SD alone is over the limit: it is sent whole, with no MSG.
  const std::string huge(3000, 'h');
  const std::string over = udp->FormatMessage(Alert(1, 1, huge));
  EXPECT_GT(over.size(), 2048u);
  EXPECT_TRUE(over.ends_with("]"));
  EXPECT_NE(over.find(absl::StrCat("signature=\"", huge, "\"")), std::string::npos);

  // TCP has no such limit.
  auto tcp = MakeSink({.transport = "tcp"});
  ASSERT_NE(tcp, nullptr);
  EXPECT_TRUE(tcp->FormatMessage(Alert(1, 1, sig)).ends_with("] " + sig));
}

TEST(SyslogFormat, UdpTruncationKeepsUtf8SequencesWhole) {
  auto udp = MakeSink({.transport = "udp"});
  ASSERT_NE(udp, nullptr);
  // The signature is in the SD too, so it must leave room for part of it as MSG.
  std::string sig;
  for (int i = 0; i < 333; ++i) {
    sig += "\xe2\x82\xac";  // U+20AC, three bytes
  }
  const std::string message = udp->FormatMessage(Alert(1, 1, sig));
  EXPECT_LE(message.size(), 2048u);
  EXPECT_GT(message.size(), 2045u);
  const std::size_t msg_start = message.rfind("] ") + 2;
  EXPECT_EQ((message.size() - msg_start) % 3, 0u);
}

TEST(SyslogFormat, OctetCountingCountsBytes) {
  EXPECT_EQ(OctetCountedFrame("abc"), "3 abc");
  EXPECT_EQ(OctetCountedFrame("\xc3\xa9"), "2 \xc3\xa9");
  EXPECT_EQ(OctetCountedFrame(""), "0 ");
}

TEST(SyslogConfigValidation, AcceptsDefaultsAndGoodAddresses) {
  EXPECT_TRUE(ValidateSyslogConfig({}).ok());
  for (const char* address : {"127.0.0.1:514", "[::1]:6514", "syslog.example.org:514",
                              "localhost:1", "[fe80::1]:65535"}) {
    EXPECT_TRUE(ValidateSyslogConfig({.address = address}).ok()) << address;
  }
  EXPECT_TRUE(ValidateSyslogConfig({.transport = "udp", .facility = "local7"}).ok());
}

TEST(SyslogConfigValidation, RejectsBadValuesNamingThem) {
  for (const char* address : {"", "localhost", "::1:514", "[::1]", "[::1]514", "[10.0.0.1]:514",
                              "host:0", "host:65536", "host:abc", ":514", "host:", "ho st:514"}) {
    const absl::Status s = ValidateSyslogConfig({.address = address});
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << address;
  }
  absl::Status s = ValidateSyslogConfig({.transport = "tls"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("tls"), absl::string_view::npos);
  s = ValidateSyslogConfig({.facility = "local8"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("local8"), absl::string_view::npos);
  EXPECT_FALSE(ValidateSyslogConfig({.app_name = ""}).ok());
  EXPECT_FALSE(ValidateSyslogConfig({.app_name = "relay watch"}).ok());
  EXPECT_FALSE(ValidateSyslogConfig({.app_name = std::string(49, 'a')}).ok());
  EXPECT_FALSE(ValidateSyslogConfig({.enterprise_id = 0}).ok());
  EXPECT_FALSE(ValidateSyslogConfig({.max_pending = 0}).ok());
  EXPECT_FALSE(SyslogSink::Create({.transport = "tls"}).ok());
}

TEST(SyslogSink, CountsFilteredEventTypes) {
  auto sink = MakeSink({.address = "127.0.0.1:9", .events = {"alert"}});
  ASSERT_NE(sink, nullptr);
  sink->Write(Session(1));
  EXPECT_EQ(sink->filtered(), 1u);
  EXPECT_EQ(sink->pending(), 0u);
  EXPECT_EQ(sink->name(), "syslog");
}

// --- Test TCP receiver ------------------------------------------------------------------

// A loopback TCP socket bound to a free port. Until Listen() a connection is refused, which
// stands in for a collector that is down.
class TestReceiver {
 public:
  TestReceiver() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~TestReceiver() {
    CloseConnection();
    ::close(fd_);
  }
  TestReceiver(const TestReceiver&) = delete;
  TestReceiver& operator=(const TestReceiver&) = delete;
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  void Listen() const { ASSERT_EQ(::listen(fd_, 8), 0); }

  // Accepts the next connection if one arrives within `timeout`.
  bool Accept(milliseconds timeout) {
    pollfd p = {fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
      return false;
    }
    CloseConnection();
    conn_ = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    return conn_ >= 0;
  }
  void CloseConnection() {
    if (conn_ >= 0) {
      ::close(conn_);
      conn_ = -1;
    }
  }

  // Reads octet-counted frames until `count` have arrived or `timeout` passes.
  std::vector<std::string> ReadFrames(std::size_t count, milliseconds timeout) {
    std::vector<std::string> frames;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (frames.size() < count) {
      // Parse whatever complete frames are buffered.
      const std::size_t sp = buffer_.find(' ');
      std::size_t len = 0;
      if (sp != std::string::npos) {
        len = std::stoul(buffer_.substr(0, sp));
        if (buffer_.size() >= sp + 1 + len) {
          frames.push_back(buffer_.substr(sp + 1, len));
          buffer_.erase(0, sp + 1 + len);
          continue;
        }
      }
      const auto left =
          std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        break;
      }
      pollfd p = {conn_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) != 1) {
        break;
      }
      char buf[4096];
      const ssize_t n = ::recv(conn_, buf, sizeof(buf), 0);
      if (n <= 0) {
        break;
      }
      buffer_.append(buf, static_cast<std::size_t>(n));
    }
    return frames;
  }

 private:
  const int fd_;
  int conn_ = -1;
  std::uint16_t port_ = 0;
  std::string buffer_;
};

// Calls Flush() until nothing is pending or `timeout` passes; the backoff decides when the
// sink actually retries.
void FlushUntilDrained(SyslogSink& sink, milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (sink.pending() > 0 && std::chrono::steady_clock::now() < deadline) {
    sink.Flush();
    std::this_thread::sleep_for(milliseconds(20));
  }
}

// --- (c) Receiver down, then up -----------------------------------------------------------

TEST(SyslogSinkTcp, BuffersWhileReceiverIsDownAndResendsInOrder) {
  TestReceiver receiver;
  auto sink = MakeSink(
      {.transport = "tcp", .address = receiver.address(), .events = {"alert", "remote_session"}});
  ASSERT_NE(sink, nullptr);
  const std::vector<Event> events = {Alert(1), Session(2), Alert(3)};
  for (const Event& e : events) {
    sink->Write(e);
  }
  EXPECT_EQ(sink->pending(), 3u);
  EXPECT_EQ(sink->sent(), 0u);
  // Later writes fall inside the backoff window and do not try again.
  EXPECT_EQ(sink->connect_failures(), 1u);

  receiver.Listen();
  FlushUntilDrained(*sink, milliseconds(5000));
  EXPECT_EQ(sink->pending(), 0u);
  EXPECT_EQ(sink->sent(), 3u);
  EXPECT_EQ(sink->dropped(), 0u);

  ASSERT_TRUE(receiver.Accept(milliseconds(2000)));
  const std::vector<std::string> frames = receiver.ReadFrames(3, milliseconds(2000));
  ASSERT_EQ(frames.size(), 3u);
  for (std::size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(frames[i], sink->FormatMessage(events[i])) << i;
  }
}

TEST(SyslogSinkTcp, FullQueueDropsOldestNonAlertFirst) {
  TestReceiver receiver;
  auto sink = MakeSink({.transport = "tcp",
                        .address = receiver.address(),
                        .events = {"alert", "remote_session"},
                        .max_pending = 3});
  ASSERT_NE(sink, nullptr);
  sink->Write(Alert(1));
  sink->Write(Session(2));
  sink->Write(Alert(3));
  EXPECT_EQ(sink->dropped(), 0u);
  sink->Write(Session(4));  // Drops session 2: [1, 3, 4].
  EXPECT_EQ(sink->dropped(), 1u);
  sink->Write(Alert(5));  // Drops session 4: [1, 3, 5].
  EXPECT_EQ(sink->dropped(), 2u);
  sink->Write(Session(6));  // Only alerts queued: the session itself is dropped.
  EXPECT_EQ(sink->dropped(), 3u);
  sink->Write(Alert(7));  // All alerts: the oldest alert goes: [3, 5, 7].
  EXPECT_EQ(sink->dropped(), 4u);
  EXPECT_EQ(sink->pending(), 3u);

  receiver.Listen();
  FlushUntilDrained(*sink, milliseconds(5000));
  ASSERT_TRUE(receiver.Accept(milliseconds(2000)));
  const std::vector<std::string> frames = receiver.ReadFrames(3, milliseconds(2000));
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0], sink->FormatMessage(Alert(3)));
  EXPECT_EQ(frames[1], sink->FormatMessage(Alert(5)));
  EXPECT_EQ(frames[2], sink->FormatMessage(Alert(7)));
}

TEST(SyslogSinkTcp, ReconnectsWhenTheReceiverClosesTheConnection) {
  TestReceiver receiver;
  receiver.Listen();
  auto sink = MakeSink({.transport = "tcp", .address = receiver.address()});
  ASSERT_NE(sink, nullptr);
  sink->Write(Alert(1));
  ASSERT_TRUE(receiver.Accept(milliseconds(2000)));
  ASSERT_EQ(receiver.ReadFrames(1, milliseconds(2000)).size(), 1u);
  receiver.CloseConnection();  // The collector restarts.
  std::this_thread::sleep_for(milliseconds(50));

  sink->Write(Alert(2));
  FlushUntilDrained(*sink, milliseconds(5000));
  ASSERT_TRUE(receiver.Accept(milliseconds(2000)));
  const std::vector<std::string> frames = receiver.ReadFrames(1, milliseconds(2000));
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0], sink->FormatMessage(Alert(2)));
  EXPECT_EQ(sink->sent(), 2u);
  EXPECT_EQ(sink->connect_failures(), 0u);
}

TEST(SyslogSinkUdp, DropsADatagramTooLargeToSendAndCarriesOn) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  auto sink =
      MakeSink({.transport = "udp", .address = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port))});
  ASSERT_NE(sink, nullptr);
  sink->Write(Alert(1, 1, std::string(70000, 'x')));  // Over the 64 KiB datagram limit.
  sink->Write(Alert(2));
  EXPECT_EQ(sink->dropped(), 1u);
  EXPECT_EQ(sink->sent(), 1u);
  EXPECT_EQ(sink->pending(), 0u);
  pollfd p = {fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  char buf[4096];
  const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(n)), sink->FormatMessage(Alert(2)));
  ::close(fd);
}

// --- (b) Interop with a real rsyslogd -----------------------------------------------------

constexpr char kRsyslogd[] = "/usr/sbin/rsyslogd";

std::uint16_t FreePort(int type) {
  const int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool TcpPortOpen(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

class RsyslogInterop : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(kRsyslogd, X_OK) != 0) {
      GTEST_SKIP() << kRsyslogd << " not installed (apt-get install rsyslog)";
    }
    std::string pattern = (fs::temp_directory_path() / "rsyslog_interop.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    udp_port_ = FreePort(SOCK_DGRAM);
    tcp_port_ = FreePort(SOCK_STREAM);
    out_ = dir_ + "/out.log";
    const std::string conf = dir_ + "/rsyslog.conf";
    // imuxsock with SysSock.Use="off" never touches /dev/log.
    std::ofstream(conf) << absl::Substitute(R"(global(workDirectory="$0")
module(load="imuxsock" SysSock.Use="off")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="$1" ruleset="r")
input(type="imtcp" address="127.0.0.1" port="$2" ruleset="r")
template(name="dbg" type="string"
         string="%protocol-version% %app-name% %procid% %msgid% %structured-data% %msg%\n")
ruleset(name="r") { action(type="omfile" file="$3" template="dbg") }
)",
                                            dir_, udp_port_, tcp_port_, out_);
    const std::string pidfile = dir_ + "/rsyslogd.pid";
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      // Keep rsyslogd's own chatter out of the test log.
      const std::string err = dir_ + "/rsyslogd.stderr";
      std::freopen(err.c_str(), "w", stderr);
      std::freopen(err.c_str(), "a", stdout);
      ::execl(kRsyslogd, kRsyslogd, "-n", "-f", conf.c_str(), "-i", pidfile.c_str(),
              static_cast<char*>(nullptr));
      std::_Exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + milliseconds(5000);
    while (!TcpPortOpen(tcp_port_)) {
      int status = 0;
      ASSERT_EQ(::waitpid(pid_, &status, WNOHANG), 0)
          << "rsyslogd exited: " << ReadFile(dir_ + "/rsyslogd.stderr");
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "rsyslogd did not listen";
      std::this_thread::sleep_for(milliseconds(50));
    }
  }

  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      const auto deadline = std::chrono::steady_clock::now() + milliseconds(5000);
      while (::waitpid(pid_, &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
          ::kill(pid_, SIGKILL);
          ::waitpid(pid_, &status, 0);
          break;
        }
        std::this_thread::sleep_for(milliseconds(20));
      }
    }
    if (!dir_.empty()) {
      fs::remove_all(dir_);
    }
  }

  static std::string ReadFile(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // The output line that contains `needle`, if it appears within `timeout`.
  std::optional<std::string> WaitForLine(absl::string_view needle, milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    do {
      for (absl::string_view line : absl::StrSplit(ReadFile(out_), '\n')) {
        if (absl::StrContains(line, needle)) {
          return static_cast<std::string>(line);
        }
      }
      std::this_thread::sleep_for(milliseconds(50));
    } while (std::chrono::steady_clock::now() < deadline);
    return std::nullopt;
  }

  // What rsyslog's debug template must print for `event` sent by `sink`.
  static std::string ExpectedLine(const SyslogSink& sink, const Event& event) {
    const std::string message = sink.FormatMessage(event);
    return absl::StrCat("1 relaywatch ", ::getpid(), " ALERT ",
                        StructuredDataOf(message, event.alert->signature), " ",
                        event.alert->signature);
  }

  std::string dir_;
  std::string out_;
  std::uint16_t udp_port_ = 0;
  std::uint16_t tcp_port_ = 0;
  pid_t pid_ = -1;
};

// Quotes, brackets and backslashes exercise RFC 5424 section 6.3.3 escaping end to end.
constexpr char kTrickySignature[] = R"(RELAYWATCH "quoted" [bracket] back\slash)";

TEST_F(RsyslogInterop, ParsesAlertOverUdp) {
  auto sink = MakeSink({.transport = "udp", .address = absl::StrCat("127.0.0.1:", udp_port_)});
  ASSERT_NE(sink, nullptr);
  const Event event = Alert(1001, 1, kTrickySignature);
  // imudp may start a moment after imtcp, and UDP gives no feedback: resend until seen.
  std::optional<std::string> line;
  const auto deadline = std::chrono::steady_clock::now() + milliseconds(5000);
  while (!line.has_value() && std::chrono::steady_clock::now() < deadline) {
    sink->Write(event);
    line = WaitForLine("flow_id=\"1001\"", milliseconds(250));
  }
  ASSERT_TRUE(line.has_value()) << ReadFile(out_);
  EXPECT_EQ(*line, ExpectedLine(*sink, event));
  EXPECT_NE(line->find(R"(signature="RELAYWATCH \"quoted\" [bracket\] back\\slash")"),
            std::string::npos)
      << *line;
}

TEST_F(RsyslogInterop, ParsesAlertOverTcpWithOctetCounting) {
  auto sink = MakeSink({.transport = "tcp", .address = absl::StrCat("127.0.0.1:", tcp_port_)});
  ASSERT_NE(sink, nullptr);
  const Event first = Alert(2001, 1, kTrickySignature);
  const Event second = Alert(2002, 3, "RELAYWATCH second\nline");
  sink->Write(first);
  sink->Write(second);
  sink->Flush();
  EXPECT_EQ(sink->sent(), 2u);
  const std::optional<std::string> line = WaitForLine("flow_id=\"2001\"", milliseconds(5000));
  ASSERT_TRUE(line.has_value()) << ReadFile(out_);
  EXPECT_EQ(*line, ExpectedLine(*sink, first));
  const std::optional<std::string> line2 = WaitForLine("flow_id=\"2002\"", milliseconds(5000));
  ASSERT_TRUE(line2.has_value()) << ReadFile(out_);
  EXPECT_NE(line2->find(" ALERT [relaywatch@32473 event_type=\"alert\""), std::string::npos)
      << *line2;
  EXPECT_TRUE(line2->ends_with("] RELAYWATCH second line")) << *line2;
}

}  // namespace
}  // namespace relaywatch::sinks
