#pragma once

#include <pcap/pcap.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "capture/base/packet_time.h"

namespace relaywatch::capture {

// One captured frame; `data` is valid until the next Next() on the same source.
struct Frame {
  const std::uint8_t* data = nullptr;
  std::uint32_t captured_length = 0;
  std::uint32_t wire_length = 0;
  PacketTime ts;
};

struct LiveOptions {
  std::string interface;
  std::string bpf;
  int snaplen = 262144;
  int buffer_size_mib = 64;
  bool promiscuous = true;
  int timeout_ms = 100;  // TPACKET_V3 block retire timeout
  // Non-zero: join this PACKET_FANOUT group (symmetric flow hash) so several handles on one
  // interface split its flows between workers. A device that is no packet socket (nflog)
  // cannot: OpenLive then fails with FailedPrecondition.
  int fanout_group = 0;
};

// Capture statistics as 64-bit running totals (pcap_stats' u_int values wrap on busy links).
struct CaptureStats {
  std::uint64_t received = 0;     // passed the filter, including those dropped
  std::uint64_t dropped = 0;      // ring buffer full
  std::uint64_t if_dropped = 0;   // NIC/driver drops (promiscuous mode only)

  // Totals of successive handles on one interface (a reopen starts from zero).
  CaptureStats& operator+=(const CaptureStats& other) {
    received += other.received;
    dropped += other.dropped;
    if_dropped += other.if_dropped;
    return *this;
  }
};

enum class NextResult { kPacket, kNone, kEnd, kError };

// A libpcap handle, live or reading a pcap/pcapng file with nanosecond timestamps.
// Thread-safety: one thread per source.
class PcapSource {
 public:
  static absl::StatusOr<std::unique_ptr<PcapSource>> OpenOffline(const std::string& path,
                                                                  const std::string& bpf);
  static absl::StatusOr<std::unique_ptr<PcapSource>> OpenLive(const LiveOptions& options);
  ~PcapSource();
  PcapSource(const PcapSource&) = delete;
  PcapSource& operator=(const PcapSource&) = delete;

  // kPacket fills `frame`; kNone: no packet ready (live, non-blocking); kEnd: end of file;
  // kError: see error().
  NextResult Next(Frame& frame);
  int datalink() const { return datalink_; }
  const std::string& name() const { return name_; }
  std::string error() const;
  // Selectable descriptor of a live handle (for Boost.Asio), -1 for files.
  int selectable_fd() const;
  // Reads pcap_stats and folds it into 64-bit totals, handling wrap.
  CaptureStats ReadStats();
  // Fraction of a file read so far (0..1), for progress display; 0 when unknown.
  double progress() const;

 private:
  PcapSource(pcap_t* handle, std::string name, bool live);

  pcap_t* handle_;
  std::string name_;
  bool live_;
  int datalink_ = 0;
  std::uint64_t file_size_ = 0;
  CaptureStats totals_;
  std::uint32_t last_recv_ = 0, last_drop_ = 0, last_ifdrop_ = 0;
};

// The interface of the IPv4 default route (/proc/net/route), for running without -i.
absl::StatusOr<std::string> DefaultRouteInterface();

// Compiles `expression` for `datalink` without opening a device (for -T and reload).
absl::Status CheckBpf(const std::string& expression, int datalink, int snaplen);

}  // namespace relaywatch::capture
