#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "daemon/sinks/held_messages.h"
#include "daemon/sinks/sink.h"

namespace relaywatch::sinks {

struct SyslogConfig {
  std::string transport = "tcp";          // "udp" (RFC 5426) | "tcp" (RFC 6587 octet counting)
  std::string address = "127.0.0.1:514";  // host:port or [v6]:port; the host may be a name
  std::string facility = "local4";        // kern, user, ..., local0..local7 (syslog.h names)
  std::string app_name = "relaywatch";    // RFC 5424 APP-NAME: 1..48 printable ASCII
  std::uint32_t enterprise_id = 32473;    // SD-ID relaywatch@<PEN>; 32473 is RFC 5612's example
  std::vector<std::string> events = {"alert"};  // event types sent; others count as filtered
  std::size_t max_pending = 10000;              // messages buffered while the receiver is down
};

// Checks a SyslogConfig without touching the network: transport, address syntax and port,
// facility name, app_name, enterprise_id and max_pending. Names are resolved only when
// connecting, so a collector that is down or not yet in DNS does not fail start-up.
absl::Status ValidateSyslogConfig(const SyslogConfig& config);

// RFC 6587 section 3.4.1 octet-counting frame: "<decimal length> SP message".
std::string OctetCountedFrame(std::string_view message);

// Sends events as RFC 5424 messages to a remote syslog collector:
//   <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [relaywatch@PEN param="value" ...] MSG
// TIMESTAMP is the event's packet time (RFC 3339, microseconds, Z). MSGID is the upper-case
// event type. PRI = facility * 8 + severity, where alert severity 1/2/3 maps to crit/
// warning/notice and any other event to info. See FormatMessage().
//
// Delivery: TCP frames use octet counting; UDP sends one datagram per message, at most
// 2048 bytes (MSG is truncated, the structured data never). Messages go into a bounded
// pending queue (config.max_pending) and are sent in order. When the collector cannot be
// reached the queue holds them and the connection is retried on later Write()/Flush() calls
// with exponential backoff (0.5 s doubling to 30 s). When the queue is full the oldest
// non-alert message is dropped first; alerts are dropped (oldest first) only when the
// queue holds nothing else. Every drop is counted in dropped(). A send error closes the
// connection and the message is sent again after reconnecting, so the collector may see
// a duplicate (TCP syslog has no acknowledgements). Pending messages are lost when the
// sink is destroyed; call Flush() first and read pending().
//
// Blocking: each call may block on the network, bounded by a 2 s connect timeout and a
// 2 s send timeout (SO_SNDTIMEO) per message; name resolution (getaddrinfo) is not
// bounded, so configure a numeric address where DNS can be slow.
// Thread-safety: Write/Flush/Reopen from the single output thread (see Sink); the counter
// accessors may be called from any thread.
class SyslogSink : public Sink {
 public:
  // Validates `config` and prepares the sink. Does not connect: the first Write() does,
  // so Create() succeeds while the collector is down.
  static absl::StatusOr<std::unique_ptr<SyslogSink>> Create(SyslogConfig config);
  ~SyslogSink() override;

  SyslogSink(const SyslogSink&) = delete;
  SyslogSink& operator=(const SyslogSink&) = delete;

  void Write(const Event& event) override;
  // Retries the connection if the backoff has expired and sends what is pending.
  void Flush() override;
  // Drops the current connection and reconnects at once (SIGHUP: the collector may have
  // moved to another address behind the same name). Never fails for a down collector.
  absl::Status Reopen() override;
  std::string_view name() const override { return "syslog"; }
  std::uint64_t undelivered() const override { return dropped() + pending(); }

  // The RFC 5424 message for `event`, without transport framing. Pure; exposed for tests.
  std::string FormatMessage(const Event& event) const;

  // Messages handed to the kernel.
  std::uint64_t sent() const { return sent_.load(std::memory_order_relaxed); }
  // Messages discarded: the pending queue was full, or (UDP) the kernel refused the
  // datagram as too large.
  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  // Failed connection attempts (resolution, refused, timeout).
  std::uint64_t connect_failures() const {
    return connect_failures_.load(std::memory_order_relaxed);
  }
  // Sends that failed and were requeued (the connection was closed).
  std::uint64_t send_errors() const { return send_errors_.load(std::memory_order_relaxed); }
  // Events skipped because their type is not in config.events.
  std::uint64_t filtered() const { return filtered_.load(std::memory_order_relaxed); }
  // Messages waiting to be sent.
  std::uint64_t pending() const { return pending_count_.load(std::memory_order_relaxed); }

 private:
  using Clock = std::chrono::steady_clock;
  SyslogSink(SyslogConfig config, int facility, std::string host, std::string port);
  void Enqueue(std::string frame, bool alert);
  void Drain();
  absl::Status Connect();
  bool PeerClosed() const;
  // Returns 0 or the errno of the failed send().
  int SendAll(std::string_view data) const;
  void CloseSocket();
  void ScheduleRetry(Clock::time_point now);
  // Single writer (the output thread), so load+store needs no read-modify-write.
  static void Bump(std::atomic<std::uint64_t>& counter, std::uint64_t n = 1) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  const SyslogConfig config_;
  const bool tcp_;
  const int facility_;
  const std::string host_;
  const std::string port_;
  const std::string hostname_;  // RFC 5424 HOSTNAME: gethostname(), sanitised.
  const std::string procid_;

  int fd_ = -1;
  HeldMessages pending_;  // Frames ready to send: framed for TCP, bare messages for UDP.
  Clock::duration backoff_;
  Clock::time_point next_attempt_;

  std::atomic<std::uint64_t> sent_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> connect_failures_{0};
  std::atomic<std::uint64_t> send_errors_{0};
  std::atomic<std::uint64_t> filtered_{0};
  std::atomic<std::uint64_t> pending_count_{0};
};

}  // namespace relaywatch::sinks
