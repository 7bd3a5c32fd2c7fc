#include "capture/pcap_source.h"

#include <linux/if_packet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
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

absl::Status CheckLinkType(int dlt, const std::string& name) {
  if (!decode::IsSupportedLinkType(dlt)) {
    const char* dlt_name = pcap_datalink_val_to_name(dlt);
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": unsupported link type ", dlt_name ? dlt_name : "?", " (", dlt,
        "); supported: EN10MB, LINUX_SLL, LINUX_SLL2, RAW, NULL, LOOP, PPP, PPP_SERIAL, "
        "PPP_ETHER, C_HDLC, NFLOG, IEEE802_11, IEEE802_11_RADIO, PPI (of these)"));
  }
  return absl::OkStatus();
}

}  // namespace

PcapSource::PcapSource(pcap_t* handle, std::string name, bool live)
    : handle_(handle),
      name_(std::move(name)),
      live_(live),
      datalink_(handle != nullptr ? pcap_datalink(handle) : 0) {}

PcapSource::~PcapSource() {
  if (handle_ != nullptr) {
    pcap_close(handle_);
  }
  for (Compiled& c : filters_) {
    pcap_freecode(&c.program);
  }
}

namespace {

// pcapng's LINKTYPE_RAW is DLT_RAW to libpcap's filter compiler; the other link types
// relaywatch decodes have one number in both lists.
int LinkTypeToDlt(int link_type) {
  return link_type == decode::kDltLinktypeRaw ? decode::kDltRaw : link_type;
}

constexpr std::uint32_t kPcapngMagic = 0x0A0D0D0A;

// Compiles `expression` for link type `dlt` without a device (config check, and each link
// type of a pcapng file). The error is libpcap's reason alone; the caller frees the program.
absl::StatusOr<bpf_program> CompileBpf(const std::string& expression, int dlt, int snaplen) {
  pcap_t* dead = pcap_open_dead(dlt, snaplen);
  bpf_program program{};
  const int rc = pcap_compile(dead, &program, expression.c_str(), 1, PCAP_NETMASK_UNKNOWN);
  const std::string reason = rc != 0 ? pcap_geterr(dead) : "";
  pcap_close(dead);
  if (rc != 0) {
    return absl::InvalidArgumentError(reason);
  }
  return program;
}

// A FILE reading a gzip stream (fopencookie): libpcap and PcapngReader read it as a plain
// file. zlib reports a damaged or cut stream as a read error, which ends the file there.
ssize_t GzRead(void* cookie, char* buffer, std::size_t size) {
  auto* gz = static_cast<gzFile>(cookie);
  const auto chunk = static_cast<unsigned>(std::min<std::size_t>(size, 1u << 30));
  const int n = gzread(gz, buffer, chunk);
  int code = Z_OK;
  gzerror(gz, &code);
  // zlib returns a cut stream's last bytes and then 0, as at a clean end (Z_BUF_ERROR, so a
  // growing file can be followed); a capture is not growing, so the cut is an error.
  if (n < 0 || (n == 0 && code == Z_BUF_ERROR)) {
    errno = EIO;
    return -1;
  }
  return n;
}

int GzClose(void* cookie) {
  return gzclose_r(static_cast<gzFile>(cookie)) == Z_OK ? 0 : EOF;
}

// A stream that first gives back the bytes already read from `in` to sniff its format, then
// the rest of `in` (a pipe cannot be read twice). Closing it closes `in`.
class PrefixedStream {
 public:
  static absl::StatusOr<std::FILE*> Open(std::FILE* in, const std::uint8_t* prefix,
                                         std::size_t size) {
    auto* stream = new PrefixedStream(in, prefix, size);
    const cookie_io_functions_t functions = {Read, nullptr, nullptr, Close};
    std::FILE* file = fopencookie(stream, "rb", functions);
    if (file == nullptr) {
      stream->in_ = nullptr;  // the caller still owns `in`
      delete stream;
      return absl::InternalError("cannot make a stream of it");
    }
    return file;
  }

 private:
  PrefixedStream(std::FILE* in, const std::uint8_t* prefix, std::size_t size)
      : in_(in), prefix_(prefix, prefix + size) {}
  ~PrefixedStream() {
    if (in_ != nullptr) {
      std::fclose(in_);
    }
  }

  static ssize_t Read(void* cookie, char* buffer, std::size_t size) {
    auto* self = static_cast<PrefixedStream*>(cookie);
    std::size_t n = 0;
    if (self->next_ < self->prefix_.size()) {
      n = std::min(size, self->prefix_.size() - self->next_);
      std::memcpy(buffer, self->prefix_.data() + self->next_, n);
      self->next_ += n;
      return static_cast<ssize_t>(n);
    }
    n = std::fread(buffer, 1, size, self->in_);
    return n == 0 && std::ferror(self->in_) != 0 ? -1 : static_cast<ssize_t>(n);
  }

  static int Close(void* cookie) {
    delete static_cast<PrefixedStream*>(cookie);
    return 0;
  }

  std::FILE* in_;
  std::vector<std::uint8_t> prefix_;
  std::size_t next_ = 0;
};

// zlib's error on `gz`, without the "<fd:N>: " it puts first; empty when there is none.
std::string GzError(gzFile gz) {
  int code = Z_OK;
  const char* text = gz != nullptr ? gzerror(gz, &code) : nullptr;
  if (code == Z_OK || code == Z_STREAM_END || text == nullptr) {
    return "";
  }
  std::string_view what(text);
  if (const auto colon = what.find(">: "); what.starts_with("<fd:") && colon != what.npos) {
    what.remove_prefix(colon + 3);
  }
  return std::string(what);
}

// Takes `file` (a regular file that starts with the gzip magic) and returns a stream of its
// decompressed bytes; `gz` is set to the zlib handle, which the stream owns, and `magic` to
// the first decompressed bytes (`got` of them).
absl::StatusOr<std::FILE*> OpenGzip(std::FILE* file, const std::string& path, gzFile& gz,
                                    std::array<std::uint8_t, 4>& magic, std::size_t& got) {
  const int fd = dup(fileno(file));
  std::fclose(file);
  gz = fd < 0 ? nullptr : gzdopen(fd, "rb");
  if (gz == nullptr) {
    if (fd >= 0) {
      close(fd);
    }
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot read gzip capture"));
  }
  gzbuffer(gz, 256 * 1024);
  const int n = gzread(gz, magic.data(), magic.size());
  got = n > 0 ? static_cast<std::size_t>(n) : 0;
  gzrewind(gz);
  const cookie_io_functions_t functions = {GzRead, nullptr, nullptr, GzClose};
  std::FILE* unzipped = fopencookie(gz, "rb", functions);
  if (unzipped == nullptr) {
    gzclose_r(gz);
    gz = nullptr;
    return absl::InternalError(absl::StrCat(path, ": cannot read gzip capture"));
  }
  return unzipped;
}

}  // namespace

const bpf_program* PcapSource::FilterFor(int link_type) {
  for (const Compiled& c : filters_) {
    if (c.link_type == link_type) {
      return &c.program;
    }
  }
  absl::StatusOr<bpf_program> program = CompileBpf(bpf_, LinkTypeToDlt(link_type), 262144);
  if (!program.ok()) {
    error_ = absl::StrCat(name_, ": bad BPF filter \"", bpf_, "\" for link type ", link_type, ": ",
                          program.status().message());
    return nullptr;
  }
  filters_.push_back(Compiled{link_type, *program});
  return &filters_.back().program;
}

absl::StatusOr<std::unique_ptr<PcapSource>> PcapSource::OpenOffline(const std::string& path,
                                                                    const std::string& bpf) {
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  pcap_t* handle = nullptr;
  std::unique_ptr<PcapngReader> pcapng;
  std::uint64_t size = 0;
  // The first bytes choose the reader: pcapng goes to ours (its interfaces may differ), pcap
  // to libpcap on the same stream, gzip through zlib first. A regular file is read again
  // from its start; a pipe or terminal gets its first bytes back through PrefixedStream.
  std::FILE* file = path == "-" ? stdin : std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot read capture: ", std::strerror(errno)));
  }
  struct stat st {};
  const bool regular = fstat(fileno(file), &st) == 0 && S_ISREG(st.st_mode);
  std::array<std::uint8_t, 4> magic{};
  std::size_t got = std::fread(magic.data(), 1, magic.size(), file);
  const bool gzip = got >= 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  gzFile gz = nullptr;
  if (regular) {
    size = static_cast<std::uint64_t>(st.st_size);
    std::rewind(file);
    if (gzip) {
      // Compressed (tcpdump -z gzip, Wireshark's "compress with gzip"): read through zlib,
      // as a stream both libpcap and our reader take.
      absl::StatusOr<std::FILE*> unzipped = OpenGzip(file, path, gz, magic, got);
      if (!unzipped.ok()) {
        return unzipped.status();
      }
      file = *unzipped;
    }
  } else if (gzip) {
    std::fclose(file);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": a gzip-compressed capture is read from a file, not a pipe (or ",
                     "decompress it into the pipe: zcat FILE | relaywatch -r -)"));
  } else {
    absl::StatusOr<std::FILE*> whole = PrefixedStream::Open(file, magic.data(), got);
    if (!whole.ok()) {
      std::fclose(file);
      return absl::InternalError(absl::StrCat(path, ": ", whole.status().message()));
    }
    file = *whole;
  }
  std::uint32_t first = 0;
  std::memcpy(&first, magic.data(), sizeof first);
  if (got == 4 && first == kPcapngMagic) {
    absl::StatusOr<std::unique_ptr<PcapngReader>> reader = PcapngReader::Open(file, path);
    if (!reader.ok()) {
      return reader.status();
    }
    pcapng = std::move(*reader);
  } else {
    handle = pcap_fopen_offline_with_tstamp_precision(file, PCAP_TSTAMP_PRECISION_NANO, errbuf);
    if (handle == nullptr) {
      if (const std::string gz_error = GzError(gz); !gz_error.empty()) {
        std::snprintf(errbuf + std::strlen(errbuf), PCAP_ERRBUF_SIZE - std::strlen(errbuf),
                      " (gzip: %s)", gz_error.c_str());
      }
      std::fclose(file);  // libpcap owns the stream only once it has taken the file
    }
  }
  if (pcapng == nullptr && handle == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot read capture: ", errbuf));
  }
  std::unique_ptr<PcapSource> source(new PcapSource(handle, path, false));
  source->file_size_ = size;
  source->gz_ = gz;
  if (pcapng == nullptr) {
    if (absl::Status s = CheckLinkType(source->datalink_, path); !s.ok()) {
      return s;
    }
    if (absl::Status s = ApplyFilter(handle, bpf, path); !s.ok()) {
      return s;
    }
    return source;
  }
  source->pcapng_ = std::move(pcapng);
  source->bpf_ = bpf;
  // The first decodable interface stands for the file; with none, say why up front.
  const auto& interfaces = source->pcapng_->interfaces();
  if (!interfaces.empty()) {
    const auto usable = std::find_if(interfaces.begin(), interfaces.end(), [](const auto& ifc) {
      return decode::IsSupportedLinkType(ifc.link_type);
    });
    source->datalink_ = usable != interfaces.end() ? usable->link_type : interfaces[0].link_type;
    if (absl::Status s = CheckLinkType(source->datalink_, path); !s.ok()) {
      return s;
    }
    if (!bpf.empty() && source->FilterFor(source->datalink_) == nullptr) {
      return absl::InvalidArgumentError(source->error_);
    }
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
  if (absl::Status s = CheckLinkType(source->datalink_, o.interface); !s.ok()) {
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
  if (pcapng_ != nullptr) {
    while (true) {
      const NextResult r = pcapng_->Next(frame);
      if (r != NextResult::kPacket || bpf_.empty()) {
        return r;
      }
      const bpf_program* program = FilterFor(frame.datalink);
      if (program == nullptr) {
        return NextResult::kError;
      }
      pcap_pkthdr header{};
      header.caplen = frame.captured_length;
      header.len = frame.wire_length;
      if (pcap_offline_filter(program, &header, frame.data) != 0) {
        return NextResult::kPacket;
      }
    }
  }
  pcap_pkthdr* header = nullptr;
  const u_char* data = nullptr;
  const int rc = pcap_next_ex(handle_, &header, &data);
  if (rc == 1) {
    frame.data = data;
    frame.captured_length = header->caplen;
    frame.wire_length = header->len;
    // With nanosecond precision requested, tv_usec holds nanoseconds.
    frame.ts = PacketTimeFromTimespec(header->ts.tv_sec, header->ts.tv_usec);
    frame.datalink = datalink_;
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
  std::string what;
  if (pcapng_ != nullptr) {
    what = error_.empty() ? pcapng_->error() : error_;
  } else {
    what = absl::StrCat(name_, ": ", pcap_geterr(handle_));
  }
  if (const std::string gz_error = GzError(gz_); !gz_error.empty()) {
    absl::StrAppend(&what, " (gzip: ", gz_error, ")");
  }
  return what;
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
  if (gz_ != nullptr) {  // the compressed bytes read, against the file's size
    return static_cast<double>(gzoffset(gz_)) / static_cast<double>(file_size_);
  }
  if (pcapng_ != nullptr) {
    return static_cast<double>(pcapng_->offset()) / static_cast<double>(file_size_);
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
  absl::StatusOr<bpf_program> program = CompileBpf(expression, datalink, snaplen);
  if (!program.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad BPF filter \"", expression, "\": ", program.status().message()));
  }
  pcap_freecode(&*program);
  return absl::OkStatus();
}

}  // namespace relaywatch::capture
