#pragma once

#include <pcap/pcap.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "capture/base/packet_time.h"
#include "capture/pcapng_reader.h"

struct gzFile_s;  // zlib's handle; <zlib.h> stays out of this header

namespace relaywatch::capture {

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

// A live libpcap handle, or a capture file: pcap through libpcap (nanosecond timestamps),
// pcapng through PcapngReader, whose interfaces may differ in link type (Frame::datalink);
// either may be gzip-compressed.
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
  // The link type of a live handle or pcap file; of a pcapng file, its first decodable
  // interface's (each frame carries its own).
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
  // The filter compiled for a pcapng interface's link type, compiled at first sight; nullptr
  // (error_ set) when the expression does not apply to that link type.
  const bpf_program* FilterFor(int link_type);

  pcap_t* handle_;  // nullptr for a pcapng file
  gzFile_s* gz_ = nullptr;  // a gzip-compressed file's zlib handle (its stream owns it)
  std::unique_ptr<PcapngReader> pcapng_;
  std::string bpf_;  // pcapng: filtered here, per link type
  struct Compiled {
    int link_type;
    bpf_program program;
  };
  std::vector<Compiled> filters_;
  std::string error_;
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
