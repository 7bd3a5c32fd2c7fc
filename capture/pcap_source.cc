#include "capture/pcap_source.h"

#include <linux/if_packet.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

#include "capture/decode/decoder.h"

namespace relaywatch::capture {
namespace {

absl::Status ApplyFilter(pcap_t* handle, const std::string& bpf, const std::string& name) {
  if (bpf.empty()) {
    return absl::OkStatus();
  }
  bpf_program program;
  if (pcap_compile(handle, &program, bpf.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": bad BPF filter \"", bpf, "\": ", pcap_geterr(handle)));
  }
  const int rc = pcap_setfilter(handle, &program);
  pcap_freecode(&program);
  if (rc != 0) {
    return absl::InternalError(absl::StrCat(name, ": cannot set filter: ", pcap_geterr(handle)));
  }
  return absl::OkStatus();
}

absl::Status CheckLinkType(pcap_t* handle, const std::string& name) {
  const int dlt = pcap_datalink(handle);
  if (!decode::IsSupportedLinkType(dlt)) {
    const char* dlt_name = pcap_datalink_val_to_name(dlt);
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": unsupported link type ", dlt_name ? dlt_name : "?", " (", dlt,
        "); supported: EN10MB, LINUX_SLL, LINUX_SLL2, RAW, NULL, LOOP, PPP, PPP_SERIAL, "
        "PPP_ETHER, C_HDLC, NFLOG, PPI (of these)"));
  }
  return absl::OkStatus();
}

}  // namespace

PcapSource::PcapSource(pcap_t* handle, std::string name, bool live)
    : handle_(handle), name_(std::move(name)), live_(live), datalink_(pcap_datalink(handle)) {}

PcapSource::~PcapSource() {
  pcap_close(handle_);
}

absl::StatusOr<std::unique_ptr<PcapSource>> PcapSource::OpenOffline(const std::string& path,
                                                                    const std::string& bpf) {
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  pcap_t* handle =
      pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, errbuf);
  if (handle == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot read capture: ", errbuf));
  }
  std::unique_ptr<PcapSource> source(new PcapSource(handle, path, false));
  struct stat st;
  if (stat(path.c_str(), &st) == 0) {
    source->file_size_ = static_cast<std::uint64_t>(st.st_size);
  }
  if (absl::Status s = CheckLinkType(handle, path); !s.ok()) {
    return s;
  }
  if (absl::Status s = ApplyFilter(handle, bpf, path); !s.ok()) {
    return s;
  }
  return source;
}

absl::StatusOr<std::unique_ptr<PcapSource>> PcapSource::OpenLive(const LiveOptions& o) {
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  pcap_t* handle = pcap_create(o.interface.c_str(), errbuf);
  if (handle == nullptr) {
    return absl::UnavailableError(absl::StrCat(o.interface, ": ", errbuf));
  }
  std::unique_ptr<PcapSource> source(new PcapSource(handle, o.interface, true));
  pcap_set_snaplen(handle, o.snaplen);
  pcap_set_promisc(handle, o.promiscuous ? 1 : 0);
  pcap_set_buffer_size(handle, o.buffer_size_mib * 1024 * 1024);
  pcap_set_timeout(handle, o.timeout_ms);
  pcap_set_tstamp_precision(handle, PCAP_TSTAMP_PRECISION_NANO);
  const int rc = pcap_activate(handle);
  if (rc < 0) {
    return absl::UnavailableError(absl::StrCat(
        o.interface, ": cannot start capture: ", pcap_statustostr(rc), ": ", pcap_geterr(handle)));
  }
  source->datalink_ = pcap_datalink(handle);
  if (absl::Status s = CheckLinkType(handle, o.interface); !s.ok()) {
    return s;
  }
  if (absl::Status s = ApplyFilter(handle, o.bpf, o.interface); !s.ok()) {
    return s;
  }
  if (pcap_setnonblock(handle, 1, errbuf) != 0) {
    return absl::InternalError(absl::StrCat(o.interface, ": ", errbuf));
  }
  if (o.fanout_group != 0) {
    // Symmetric flow hash: both directions of a flow reach the same socket. DEFRAG makes
    // the kernel reassemble fragments before hashing so they land together.
    const int fd = pcap_fileno(handle);
    int arg = (o.fanout_group & 0xffff) | ((PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16);
    if (setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg, sizeof arg) != 0) {
      const int error = errno;
      const std::string what = absl::StrCat(o.interface, ": PACKET_FANOUT group ", o.fanout_group,
                                            ": ", std::strerror(error));
      // Not a packet socket (nflog, usbmon, ...): the caller can capture it on one handle.
      return error == ENOPROTOOPT || error == ENOTSOCK ? absl::FailedPreconditionError(what)
                                                       : absl::InternalError(what);
    }
  }
  return source;
}

NextResult PcapSource::Next(Frame& frame) {
  pcap_pkthdr* header = nullptr;
  const u_char* data = nullptr;
  const int rc = pcap_next_ex(handle_, &header, &data);
  if (rc == 1) {
    frame.data = data;
    frame.captured_length = header->caplen;
    frame.wire_length = header->len;
    // With nanosecond precision requested, tv_usec holds nanoseconds.
    frame.ts = PacketTimeFromTimespec(header->ts.tv_sec, header->ts.tv_usec);
    return NextResult::kPacket;
  }
  if (rc == 0) {
    return NextResult::kNone;
  }
  if (rc == PCAP_ERROR_BREAK) {
    return NextResult::kEnd;
  }
  return NextResult::kError;
}

std::string PcapSource::error() const {
  return absl::StrCat(name_, ": ", pcap_geterr(handle_));
}

int PcapSource::selectable_fd() const {
  return live_ ? pcap_get_selectable_fd(handle_) : -1;
}

CaptureStats PcapSource::ReadStats() {
  pcap_stat st{};
  if (!live_ || pcap_stats(handle_, &st) != 0) {
    return totals_;
  }
  // Unsigned subtraction handles a 32-bit wrap between reads.
  totals_.received += static_cast<std::uint32_t>(st.ps_recv - last_recv_);
  totals_.dropped += static_cast<std::uint32_t>(st.ps_drop - last_drop_);
  totals_.if_dropped += static_cast<std::uint32_t>(st.ps_ifdrop - last_ifdrop_);
  last_recv_ = st.ps_recv;
  last_drop_ = st.ps_drop;
  last_ifdrop_ = st.ps_ifdrop;
  return totals_;
}

double PcapSource::progress() const {
  if (live_ || file_size_ == 0) {
    return 0;
  }
  FILE* f = pcap_file(handle_);
  if (f == nullptr) {
    return 0;
  }
  const long pos = ftell(f);
  return pos > 0 ? static_cast<double>(pos) / static_cast<double>(file_size_) : 0;
}

absl::StatusOr<std::string> DefaultRouteInterface() {
  std::ifstream in("/proc/net/route");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::vector<std::string> fields = absl::StrSplit(line, '\t', absl::SkipWhitespace());
    if (fields.size() > 2 && fields[1] == "00000000") {
      return fields[0];
    }
  }
  return absl::NotFoundError(
      "no IPv4 default route to pick a capture interface from; name one with -i IFACE");
}

absl::Status CheckBpf(const std::string& expression, int datalink, int snaplen) {
  if (expression.empty()) {
    return absl::OkStatus();
  }
  pcap_t* dead = pcap_open_dead(datalink, snaplen);
  bpf_program program;
  const int rc = pcap_compile(dead, &program, expression.c_str(), 1, PCAP_NETMASK_UNKNOWN);
  absl::Status status = absl::OkStatus();
  if (rc != 0) {
    status = absl::InvalidArgumentError(
        absl::StrCat("bad BPF filter \"", expression, "\": ", pcap_geterr(dead)));
  } else {
    pcap_freecode(&program);
  }
  pcap_close(dead);
  return status;
}

}  // namespace relaywatch::capture
