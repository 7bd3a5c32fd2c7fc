// Helpers shared by the fuzz targets in tests/fuzz/: the invariant check, the exception
// guard of the file-parser targets, and a two-endpoint conversation that feeds one detector.
// Header-only, so each target still links as one source file plus its libraries.

#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <span>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

#include "capture/base/ip_address.h"
#include "capture/base/packet_time.h"
#include "capture/decode/decoded_packet.h"
#include "capture/flow/flow_table.h"
#include "detectors/detector.h"

namespace relaywatch::fuzz {

using Bytes = std::span<const std::uint8_t>;

// Reports a broken invariant and aborts, which libFuzzer records as a crash with its input.
[[noreturn]] inline void CheckFailed(const char* file, int line, const char* condition) {
  std::fprintf(stderr, "%s:%d: check failed: %s\n", file, line, condition);
  std::abort();
}

// Reports "<target>: <what>: <detail>" and aborts, for targets whose checks name the value.
[[noreturn]] inline void Fail(const char* target, const char* what, const std::string& detail) {
  std::fprintf(stderr, "%s: %s: %s\n", target, what, detail.c_str());
  std::abort();
}

// Runs `run` and fails if an exception escapes it: parsers must turn library exceptions
// (yaml-cpp, the standard library) into a Status where they call the library.
template <typename Fn>
void FailOnException(const char* target, Fn&& run) {
  try {
    run();
  } catch (const std::exception& e) {
    Fail(target, "exception escaped", e.what());
  } catch (...) {
    Fail(target, "exception escaped", "(not a std::exception)");
  }
}

inline absl::string_view AsText(const std::uint8_t* data, std::size_t size) {
  return absl::string_view(reinterpret_cast<const char*>(data), size);
}

// Calls `on_record(control, payload)` for each record of `input`: a control byte, a
// big-endian length of `length_bytes` bytes, then that many payload bytes (fewer if the
// input ends first). A record cut short in its header is ignored.
template <typename OnRecord>
void ForEachRecord(Bytes input, std::size_t length_bytes, OnRecord&& on_record) {
  std::size_t i = 0;
  while (i + 1 + length_bytes <= input.size()) {
    const std::uint8_t control = input[i];
    std::size_t declared = 0;
    for (std::size_t b = 1; b <= length_bytes; ++b) {
      declared = (declared << 8) | input[i + b];
    }
    const std::size_t header = 1 + length_bytes;
    const std::size_t length = std::min(declared, input.size() - i - header);
    const Bytes payload = input.subspan(i + header, length);
    i += header + length;
    on_record(control, payload);
  }
}

// A client (side 0) and a server (side 1) exchanging IPv4 packets through a FlowTable into
// one detector, as daemon/worker.cc drives detectors: the detector sees a flow's packets
// until it returns kDone for that flow, and OnFlowEnd when the table ends the flow.
//
// The detector and the event buffer must outlive the conversation. Not thread-safe.
class Conversation {
 public:
  struct Options {
    // Documentation addresses (RFC 5737).
    IpAddress client_ip = *IpAddress::Parse("192.0.2.10");
    IpAddress server_ip = *IpAddress::Parse("198.51.100.20");
    std::uint16_t client_port = 51000;
    std::uint16_t server_port = 0;
    bool udp = false;
    // TCP: initial sequence numbers of the client and the server.
    std::uint32_t client_seq = 1000;
    std::uint32_t server_seq = 5000;
    // TCP: fill in the ACK number (the peer's next sequence number, less Segment::ack_lag).
    bool set_ack = true;
    // TCP: a SYN takes a sequence number (RFC 9293 3.4). Off for corpora made without it.
    bool syn_takes_seq = true;
    // wire_length = 54 + payload size; off leaves it 0 for corpora made without it.
    bool set_wire_length = true;
    // The clock moves by this much after each packet.
    absl::Duration step_after_send = absl::ZeroDuration();
    flow::FlowTableConfig table = {};
    // Called with each packet before the flow table sees it (extra parser coverage).
    std::function<void(const decode::DecodedPacket&)> before_track = nullptr;
    // Called with the packet's flow after the detector saw it (state size invariants).
    std::function<void(const flow::FlowState&)> after_packet = nullptr;
  };

  struct Segment {
    std::uint8_t tcp_flags = 0;
    Bytes payload = {};
    // TCP: this many bytes from the same side went by unseen just before (capture loss).
    std::uint32_t lost_before = 0;
    // TCP: repeats the last payload.size() bytes sent from this side (a retransmission).
    bool retransmit = false;
    // TCP: reuses the previous segment's sequence number, which then does not advance.
    bool resend = false;
    // TCP: sent this many bytes behind the side's next sequence number (a reordered segment,
    // when those bytes were skipped with lost_before; else a retransmission), which then does
    // not advance.
    std::uint32_t behind = 0;
    // TCP: acknowledge this many bytes less than the peer has sent.
    std::uint32_t ack_lag = 0;
  };

  Conversation(Options options, detectors::Detector& detector, detectors::EventBuffer& events)
      : options_(std::move(options)),
        detector_(detector),
        events_(events),
        table_(options_.table,
               [this](flow::FlowState& f, flow::EndReason) { detector_.OnFlowEnd(f, events_); }),
        seq_{options_.client_seq, options_.server_seq},
        last_seq_{seq_[0], seq_[1]} {}

  Conversation(const Conversation&) = delete;
  Conversation& operator=(const Conversation&) = delete;

  // Sends one packet from side `from` (0 client, 1 server) at the current time.
  void Send(int from, const Segment& segment) {
    decode::DecodedPacket p;
    p.ts = now_;
    p.ip_version = 4;
    p.protocol = options_.udp ? decode::kProtoUdp : decode::kProtoTcp;
    p.src = from == 0 ? options_.client_ip : options_.server_ip;
    p.dst = from == 0 ? options_.server_ip : options_.client_ip;
    p.src_port = from == 0 ? options_.client_port : options_.server_port;
    p.dst_port = from == 0 ? options_.server_port : options_.client_port;
    p.payload = segment.payload;
    p.payload_length = static_cast<std::uint32_t>(segment.payload.size());
    if (options_.set_wire_length) {
      p.wire_length = 54 + p.payload_length;
    }
    if (!options_.udp) {
      seq_[from] += segment.lost_before;
      if (segment.retransmit) {
        seq_[from] -= p.payload_length;
      }
      p.tcp_flags = segment.tcp_flags;
      p.seq = segment.resend ? last_seq_[from] : seq_[from];
      if (segment.behind != 0) {
        p.seq = seq_[from] - segment.behind;
      }
      if (options_.set_ack) {
        p.ack = seq_[1 - from] - segment.ack_lag;
      }
      last_seq_[from] = p.seq;
      if (!segment.resend && segment.behind == 0) {
        const bool syn = options_.syn_takes_seq && p.has(decode::kTcpSyn);
        seq_[from] += p.payload_length + (syn ? 1 : 0);
      }
    }
    if (options_.before_track) {
      options_.before_track(p);
    }
    flow::Direction direction;
    flow::FlowState& f = table_.Track(p, direction);
    if ((f.detectors_done & 1U) == 0 &&
        detector_.OnPacket(p, f, direction, events_) == detectors::Verdict::kDone) {
      f.detectors_done |= 1U;
    }
    if (options_.after_packet) {
      options_.after_packet(f);
    }
    now_ += options_.step_after_send;
  }

  void Send(int from, std::uint8_t tcp_flags, Bytes payload = {}) {
    Send(from, Segment{.tcp_flags = tcp_flags, .payload = payload});
  }

  // SYN, SYN/ACK, ACK, with the given extra delays before the second and third.
  void Handshake(absl::Duration syn_ack_delay = absl::ZeroDuration(),
                 absl::Duration ack_delay = absl::ZeroDuration()) {
    Send(0, decode::kTcpSyn);
    now_ += syn_ack_delay;
    Send(1, decode::kTcpSyn | decode::kTcpAck);
    now_ += ack_delay;
    Send(0, decode::kTcpAck);
  }

  void Advance(absl::Duration duration) { now_ += duration; }
  // Ends every flow, as the worker does at shutdown, so OnFlowEnd runs for each.
  void EndAll() { table_.EndAll(flow::EndReason::kShutdown); }

  const flow::FlowTable& table() const { return table_; }

 private:
  const Options options_;
  detectors::Detector& detector_;
  detectors::EventBuffer& events_;
  flow::FlowTable table_;
  std::uint32_t seq_[2];
  std::uint32_t last_seq_[2];
  PacketTime now_ = absl::FromUnixSeconds(1700000000);
};

}  // namespace relaywatch::fuzz

// Like assert(), but on in every build type: the fuzz and replay builds define NDEBUG.
#define RW_FUZZ_CHECK(cond)                                       \
  do {                                                            \
    if (!(cond)) {                                                \
      ::relaywatch::fuzz::CheckFailed(__FILE__, __LINE__, #cond); \
    }                                                             \
  } while (false)
