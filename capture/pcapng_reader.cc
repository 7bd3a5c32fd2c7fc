#include "capture/pcapng_reader.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"

namespace relaywatch::capture {
namespace {

// Block types (draft-ietf-opsawg-pcapng).
constexpr std::uint32_t kSectionHeader = 0x0A0D0D0A;
constexpr std::uint32_t kInterfaceDescription = 1;
constexpr std::uint32_t kObsoletePacket = 2;
constexpr std::uint32_t kSimplePacket = 3;
constexpr std::uint32_t kEnhancedPacket = 6;
constexpr std::uint32_t kByteOrderMagic = 0x1A2B3C4D;

constexpr std::uint16_t kOptEnd = 0;
constexpr std::uint16_t kOptTsResol = 9;
constexpr std::uint16_t kOptTsOffset = 14;

// Bounds a timestamp's seconds and its interface's offset so their sum cannot overflow;
// absl::Time stays finite. Captures with absurd clocks are still read as they say.
constexpr std::int64_t kMaxSeconds = std::int64_t{1} << 61;

std::uint32_t Native32(const std::uint8_t* p) {
  std::uint32_t v = 0;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PcapngReader>> PcapngReader::Open(std::FILE* file,
                                                                 std::string name) {
  std::unique_ptr<PcapngReader> reader(new PcapngReader(file, std::move(name)));
  Frame frame;
  while (true) {
    const Block b = reader->ReadBlock(frame);
    if (b == Block::kError) {
      return absl::InvalidArgumentError(reader->error_);
    }
    if (b == Block::kEnd) {
      return reader;
    }
    if (b == Block::kPacket) {
      reader->pending_ = true;
      reader->pending_frame_ = frame;
      return reader;
    }
  }
}

PcapngReader::~PcapngReader() {
  std::fclose(file_);
}

NextResult PcapngReader::Next(Frame& frame) {
  if (pending_) {
    pending_ = false;
    frame = pending_frame_;
    return NextResult::kPacket;
  }
  if (!error_.empty()) {
    return NextResult::kError;
  }
  while (true) {
    switch (ReadBlock(frame)) {
      case Block::kPacket:
        return NextResult::kPacket;
      case Block::kEnd:
        return NextResult::kEnd;
      case Block::kError:
        return NextResult::kError;
      case Block::kOther:
        break;
    }
  }
}

bool PcapngReader::Read(std::size_t n) {
  // The buffer only grows (to the largest block), so it is not cleared or filled per block;
  // one thread reads, so stdio's lock is not needed.
  if (block_.size() < used_ + n) {
    block_.resize(used_ + n);
  }
  got_ = fread_unlocked(block_.data() + used_, 1, n, file_);
  offset_ += got_;
  used_ += got_;
  return got_ == n;
}

std::uint16_t PcapngReader::U16(const std::uint8_t* p) const {
  std::uint16_t v = 0;
  std::memcpy(&v, p, 2);
  return swapped_ ? static_cast<std::uint16_t>((v >> 8) | (v << 8)) : v;
}

std::uint32_t PcapngReader::U32(const std::uint8_t* p) const {
  std::uint32_t v = 0;
  std::memcpy(&v, p, 4);
  return swapped_ ? __builtin_bswap32(v) : v;
}

std::uint64_t PcapngReader::U64(const std::uint8_t* p) const {
  std::uint64_t v = 0;
  std::memcpy(&v, p, 8);
  return swapped_ ? __builtin_bswap64(v) : v;
}

PcapngReader::Block PcapngReader::Fail(const std::string& what) {
  error_ = absl::StrCat(name_, ": ", what, " (pcapng block at byte ", block_at_, ")");
  return Block::kError;
}

PcapngReader::Block PcapngReader::ShortRead(const std::string& what) {
  // A read error (a disk's, a cut gzip stream's) is not the end of the file.
  if (std::ferror(file_) != 0) {
    return Fail(absl::StrCat("cannot read: ", std::strerror(errno), "; ", what));
  }
  return Fail(absl::StrCat("truncated file: ", what));
}

PcapngReader::Block PcapngReader::ReadBlock(Frame& frame) {
  block_at_ = offset_;
  used_ = 0;
  if (!Read(8)) {
    if (got_ == 0 && std::ferror(file_) == 0) {
      return Block::kEnd;
    }
    return ShortRead(absl::StrCat("a block header of 8 bytes has ", got_));
  }
  const std::uint32_t type_raw = Native32(block_.data());
  if (type_raw == kSectionHeader) {
    // The byte-order magic after the length says how to read the length itself.
    if (!Read(4)) {
      return ShortRead("a section header has 8 bytes");
    }
    const std::uint32_t magic = Native32(block_.data() + 8);
    if (magic == kByteOrderMagic) {
      swapped_ = false;
    } else if (magic == __builtin_bswap32(kByteOrderMagic)) {
      swapped_ = true;
    } else {
      return Fail("section header with a bad byte-order magic");
    }
  } else if (!in_section_) {
    return Fail("not a pcapng file: it does not start with a section header");
  }
  const std::uint32_t type = U32(block_.data());
  const std::uint32_t length = U32(block_.data() + 4);
  const std::uint32_t minimum = type == kSectionHeader ? 28 : 12;
  if (length < minimum || length % 4 != 0) {
    return Fail(
        absl::StrCat("block length ", length, " is not a multiple of 4 of at least ", minimum));
  }
  if (length > kMaxBlockBytes) {
    return Fail(absl::StrCat("block of ", length, " bytes is over the limit of ", kMaxBlockBytes));
  }
  const std::size_t have = used_;
  if (!Read(length - have)) {
    return ShortRead(absl::StrCat("a block of ", length, " bytes has ", have + got_));
  }
  if (U32(block_.data() + length - 4) != length) {
    return Fail("block length at its end differs from the one at its start");
  }
  const std::uint8_t* body = block_.data() + 8;
  const std::size_t size = length - 12;
  switch (type) {
    case kSectionHeader:
      return SectionHeader(body);
    case kInterfaceDescription:
      return InterfaceDescription(body, size);
    case kEnhancedPacket:
      if (size < 20) {
        return Fail("enhanced packet block too short");
      }
      return Packet(U32(body), true, (std::uint64_t{U32(body + 4)} << 32) | U32(body + 8),
                    U32(body + 12), U32(body + 16), body + 20, size - 20, frame);
    case kObsoletePacket:
      if (size < 20) {
        return Fail("packet block too short");
      }
      return Packet(U16(body), true, (std::uint64_t{U32(body + 4)} << 32) | U32(body + 8),
                    U32(body + 12), U32(body + 16), body + 20, size - 20, frame);
    case kSimplePacket: {
      if (size < 4) {
        return Fail("simple packet block too short");
      }
      if (interfaces_.empty()) {
        return Fail("simple packet block before any interface description");
      }
      // The captured length is what the block holds, up to the wire length and snapshot.
      std::size_t captured = std::min<std::size_t>(U32(body), size - 4);
      if (interfaces_[0].snaplen != 0) {
        captured = std::min<std::size_t>(captured, interfaces_[0].snaplen);
      }
      return Packet(0, false, 0, static_cast<std::uint32_t>(captured), U32(body), body + 4,
                    size - 4, frame);
    }
    default:
      return Block::kOther;
  }
}

PcapngReader::Block PcapngReader::SectionHeader(const std::uint8_t* body) {
  const std::uint16_t major = U16(body + 4);
  if (major != 1) {
    return Fail(absl::StrCat("pcapng major version ", major, " is not 1"));
  }
  in_section_ = true;
  interfaces_.clear();
  return Block::kOther;
}

PcapngReader::Block PcapngReader::InterfaceDescription(const std::uint8_t* body, std::size_t size) {
  if (size < 8) {
    return Fail("interface description block too short");
  }
  if (interfaces_.size() >= kMaxInterfaces) {
    return Fail(absl::StrCat("more than ", kMaxInterfaces, " interfaces in one section"));
  }
  Interface ifc;
  ifc.link_type = U16(body);
  ifc.snaplen = U32(body + 4);
  // Options: code, length, value padded to 4 bytes. A malformed list ends the options, as in
  // Wireshark; the interface itself is usable.
  std::size_t pos = 8;
  while (pos + 4 <= size) {
    const std::uint16_t code = U16(body + pos);
    const std::uint16_t length = U16(body + pos + 2);
    const std::size_t value = pos + 4;
    if (code == kOptEnd || value + length > size) {
      break;
    }
    if (code == kOptTsResol && length >= 1) {
      const std::uint8_t resol = body[value];
      const unsigned exponent = resol & 0x7f;
      if (resol & 0x80) {
        if (exponent > 63) {
          return Fail(absl::StrCat("if_tsresol 2^-", exponent, " is finer than 2^-63"));
        }
        ifc.units_per_second = std::uint64_t{1} << exponent;
      } else {
        if (exponent > 19) {
          return Fail(absl::StrCat("if_tsresol 10^-", exponent, " is finer than 10^-19"));
        }
        ifc.units_per_second = 1;
        for (unsigned i = 0; i < exponent; ++i) {
          ifc.units_per_second *= 10;
        }
      }
    } else if (code == kOptTsOffset && length >= 8) {
      ifc.offset_seconds =
          std::clamp(static_cast<std::int64_t>(U64(body + value)), -kMaxSeconds, kMaxSeconds);
    }
    pos = value + ((length + 3u) & ~3u);
  }
  interfaces_.push_back(ifc);
  return Block::kOther;
}

PcapngReader::Block PcapngReader::Packet(std::uint32_t interface_id, bool timed,
                                         std::uint64_t units, std::uint32_t captured,
                                         std::uint32_t wire, const std::uint8_t* data,
                                         std::size_t room, Frame& frame) {
  if (interface_id >= interfaces_.size()) {
    return Fail(absl::StrCat("packet on interface ", interface_id, ", which the section has not ",
                             "described (it describes ", interfaces_.size(), ")"));
  }
  if (captured > room) {
    return Fail(
        absl::StrCat("packet of ", captured, " captured bytes in a block with room for ", room));
  }
  const Interface& ifc = interfaces_[interface_id];
  if (timed) {
    const std::uint64_t whole = units / ifc.units_per_second;
    const std::uint64_t fraction = units % ifc.units_per_second;
    const std::int64_t nanos =
        static_cast<std::int64_t>(absl::uint128(fraction) * 1000000000 / ifc.units_per_second);
    const std::int64_t seconds =
        static_cast<std::int64_t>(std::min<std::uint64_t>(whole, kMaxSeconds)) + ifc.offset_seconds;
    last_ts_ = PacketTimeFromTimespec(seconds, nanos);
  }
  frame.data = data;
  frame.captured_length = captured;
  frame.wire_length = std::max(wire, captured);
  frame.ts = last_ts_;
  frame.datalink = ifc.link_type;
  return Block::kPacket;
}

}  // namespace relaywatch::capture
