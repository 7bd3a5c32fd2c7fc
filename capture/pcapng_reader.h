#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "capture/base/packet_time.h"

namespace relaywatch::capture {

// One captured frame; `data` is valid until the next Next() on the same source.
struct Frame {
  const std::uint8_t* data = nullptr;
  std::uint32_t captured_length = 0;
  std::uint32_t wire_length = 0;
  PacketTime ts;
  int datalink = 0;  // link type of the interface the frame was captured on
};

enum class NextResult { kPacket, kNone, kEnd, kError };

// Reads a pcapng file block by block, each interface with its own link type, snapshot length
// and timestamp resolution and offset. libpcap 1.10 refuses a second interface whose link type
// or snapshot length differs from the first one's, which is what `dumpcap -i a -i b`, mergecap
// and Wireshark's "save as" write; it would read nothing of such a file.
//
// Blocks read: section headers (either byte order; a new section forgets the interfaces),
// interface descriptions (options if_tsresol and if_tsoffset), enhanced, simple and obsolete
// packet blocks. Others (name resolution, statistics, secrets, custom) are skipped. A simple
// packet block has no timestamp and takes the previous packet's, so packet-time clocks never
// run backwards.
//
// Thread-safety: one thread per reader.
class PcapngReader {
 public:
  struct Interface {
    int link_type = 0;
    std::uint32_t snaplen = 0;                 // 0: no limit
    std::uint64_t units_per_second = 1000000;  // if_tsresol; the default is microseconds
    std::int64_t offset_seconds = 0;           // if_tsoffset
  };

  // Blocks beyond this are refused as damage (libpcap's limit too): no capture needs them
  // and a corrupt length must not make us allocate gigabytes.
  static constexpr std::uint32_t kMaxBlockBytes = 16 * 1024 * 1024;
  static constexpr std::size_t kMaxInterfaces = 65536;

  // Takes `file` (closed by the reader), positioned at the file's first byte. Reads the
  // section header and every block before the first packet, so interfaces() describes the
  // capture's start.
  static absl::StatusOr<std::unique_ptr<PcapngReader>> Open(std::FILE* file, std::string name);
  ~PcapngReader();
  PcapngReader(const PcapngReader&) = delete;
  PcapngReader& operator=(const PcapngReader&) = delete;

  // kPacket fills `frame`; kEnd at the end of the file; kError: see error(), the reader stops.
  NextResult Next(Frame& frame);
  // "name: what is wrong, at byte N".
  const std::string& error() const { return error_; }
  // Interfaces of the current section.
  const std::vector<Interface>& interfaces() const { return interfaces_; }
  // Bytes consumed so far, for progress display.
  std::uint64_t offset() const { return offset_; }

 private:
  enum class Block { kPacket, kOther, kEnd, kError };

  PcapngReader(std::FILE* file, std::string name) : file_(file), name_(std::move(name)) {}

  Block ReadBlock(Frame& frame);
  Block SectionHeader(const std::uint8_t* body);  // at least 16 bytes
  Block InterfaceDescription(const std::uint8_t* body, std::size_t size);
  // `timed`: false for a simple packet block, which takes the previous timestamp.
  Block Packet(std::uint32_t interface_id, bool timed, std::uint64_t units, std::uint32_t captured,
               std::uint32_t wire, const std::uint8_t* data, std::size_t room, Frame& frame);
  Block Fail(const std::string& what);
  // Fails a read that came short: "cannot read" on a stream error, else "truncated file".
  Block ShortRead(const std::string& what);
  // Reads exactly `n` more bytes of the block into block_; false at a short read (got_ says
  // how many).
  bool Read(std::size_t n);

  std::uint16_t U16(const std::uint8_t* p) const;
  std::uint32_t U32(const std::uint8_t* p) const;
  std::uint64_t U64(const std::uint8_t* p) const;

  std::FILE* file_;
  std::string name_;
  std::string error_;
  std::vector<std::uint8_t> block_;  // the block being read: its first used_ bytes
  std::size_t used_ = 0;
  std::vector<Interface> interfaces_;
  std::uint64_t offset_ = 0;
  std::uint64_t block_at_ = 0;  // offset of the block being read, for errors
  std::size_t got_ = 0;
  bool swapped_ = false;
  bool in_section_ = false;
  PacketTime last_ts_ = absl::UnixEpoch();
  // Open() reads up to the first packet, which Next() then returns first.
  bool pending_ = false;
  Frame pending_frame_;
};

}  // namespace relaywatch::capture
