#include "capture/pcapng_reader.h"

#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "capture/decode/decoder.h"
#include "capture/pcap_source.h"

namespace relaywatch::capture {
namespace {

using ::testing::HasSubstr;

// Writes pcapng blocks in either byte order.
class Pcapng {
 public:
  explicit Pcapng(bool big_endian = false) : big_(big_endian) {}

  Pcapng& Section(std::uint16_t major = 1) {
    std::vector<std::uint8_t> body;
    Put32(body, 0x1A2B3C4D);
    Put16(body, major);
    Put16(body, 0);
    Put32(body, 0xffffffff);  // section length unknown
    Put32(body, 0xffffffff);
    return Block(0x0A0D0D0A, body);
  }
  // `tsresol` < 0: no if_tsresol option.
  Pcapng& Interface(std::uint16_t link_type, std::uint32_t snaplen, int tsresol = -1,
                    std::int64_t tsoffset = 0) {
    std::vector<std::uint8_t> body;
    Put16(body, link_type);
    Put16(body, 0);
    Put32(body, snaplen);
    if (tsresol >= 0) {
      Put16(body, 9);
      Put16(body, 1);
      body.push_back(static_cast<std::uint8_t>(tsresol));
      body.insert(body.end(), 3, 0);
    }
    if (tsoffset != 0) {
      Put16(body, 14);
      Put16(body, 8);
      const auto v = static_cast<std::uint64_t>(tsoffset);
      Put32(body, static_cast<std::uint32_t>(big_ ? v >> 32 : v));
      Put32(body, static_cast<std::uint32_t>(big_ ? v : v >> 32));
    }
    Put16(body, 0);
    Put16(body, 0);
    return Block(1, body);
  }
  Pcapng& Enhanced(std::uint32_t interface_id, std::uint64_t units,
                   const std::vector<std::uint8_t>& data, std::uint32_t wire = 0) {
    std::vector<std::uint8_t> body;
    Put32(body, interface_id);
    Put32(body, static_cast<std::uint32_t>(units >> 32));
    Put32(body, static_cast<std::uint32_t>(units));
    Put32(body, static_cast<std::uint32_t>(data.size()));
    Put32(body, wire != 0 ? wire : static_cast<std::uint32_t>(data.size()));
    Padded(body, data);
    return Block(6, body);
  }
  Pcapng& Simple(const std::vector<std::uint8_t>& data) {
    std::vector<std::uint8_t> body;
    Put32(body, static_cast<std::uint32_t>(data.size()));
    Padded(body, data);
    return Block(3, body);
  }
  Pcapng& Obsolete(std::uint16_t interface_id, std::uint64_t units,
                   const std::vector<std::uint8_t>& data) {
    std::vector<std::uint8_t> body;
    Put16(body, interface_id);
    Put16(body, 0);  // drops
    Put32(body, static_cast<std::uint32_t>(units >> 32));
    Put32(body, static_cast<std::uint32_t>(units));
    Put32(body, static_cast<std::uint32_t>(data.size()));
    Put32(body, static_cast<std::uint32_t>(data.size()));
    Padded(body, data);
    return Block(2, body);
  }
  Pcapng& Block(std::uint32_t type, const std::vector<std::uint8_t>& body) {
    const auto length = static_cast<std::uint32_t>(body.size() + 12);
    Put32(bytes_, type);
    Put32(bytes_, length);
    bytes_.insert(bytes_.end(), body.begin(), body.end());
    Put32(bytes_, length);
    return *this;
  }
  std::vector<std::uint8_t>& bytes() { return bytes_; }

 private:
  void Put16(std::vector<std::uint8_t>& out, std::uint16_t v) const {
    for (int i = 0; i < 2; ++i) {
      out.push_back(static_cast<std::uint8_t>(v >> (big_ ? 8 * (1 - i) : 8 * i)));
    }
  }
  void Put32(std::vector<std::uint8_t>& out, std::uint32_t v) const {
    for (int i = 0; i < 4; ++i) {
      out.push_back(static_cast<std::uint8_t>(v >> (big_ ? 8 * (3 - i) : 8 * i)));
    }
  }
  static void Padded(std::vector<std::uint8_t>& out, const std::vector<std::uint8_t>& data) {
    out.insert(out.end(), data.begin(), data.end());
    out.insert(out.end(), (4 - data.size() % 4) % 4, 0);
  }

  bool big_;
  std::vector<std::uint8_t> bytes_;
};

// fmemopen needs the bytes to outlive the FILE; the test keeps them.
absl::StatusOr<std::unique_ptr<PcapngReader>> OpenBytes(std::vector<std::uint8_t>& bytes) {
  std::FILE* f = fmemopen(bytes.data(), bytes.size(), "rb");
  return PcapngReader::Open(f, "test.pcapng");
}

struct Read {
  std::vector<Frame> frames;
  std::vector<std::vector<std::uint8_t>> data;
  NextResult last = NextResult::kPacket;
};

Read ReadAll(PcapngReader& reader) {
  Read r;
  Frame frame;
  while ((r.last = reader.Next(frame)) == NextResult::kPacket) {
    r.frames.push_back(frame);
    r.data.emplace_back(frame.data, frame.data + frame.captured_length);
  }
  return r;
}

const std::vector<std::uint8_t> kFrameA = {1, 2, 3, 4, 5};
const std::vector<std::uint8_t> kFrameB = {9, 8, 7, 6, 5, 4, 3, 2};

TEST(PcapngReader, InterfacesOfDifferentLinkTypesAndSnapLengthsAreAllRead) {
  // What mergecap writes for an Ethernet and a raw-IP capture, which libpcap refuses.
  Pcapng f;
  f.Section()
      .Interface(decode::kDltEthernet, 262144)
      .Interface(decode::kDltLinktypeRaw, 1500)
      .Enhanced(0, 1700000000000000, kFrameA)
      .Enhanced(1, 1700000000500000, kFrameB)
      .Enhanced(0, 1700000001000000, kFrameB);
  auto reader = OpenBytes(f.bytes());
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_EQ((*reader)->interfaces().size(), 2u);
  const Read r = ReadAll(**reader);
  EXPECT_EQ(r.last, NextResult::kEnd);
  ASSERT_EQ(r.frames.size(), 3u);
  EXPECT_EQ(r.frames[0].datalink, decode::kDltEthernet);
  EXPECT_EQ(r.frames[1].datalink, decode::kDltLinktypeRaw);
  EXPECT_EQ(r.frames[2].datalink, decode::kDltEthernet);
  EXPECT_EQ(r.data[0], kFrameA);
  EXPECT_EQ(r.data[1], kFrameB);
  EXPECT_EQ(r.frames[1].ts, absl::FromUnixMillis(1700000000500));
  EXPECT_EQ(r.frames[1].captured_length, kFrameB.size());
  EXPECT_EQ(r.frames[1].wire_length, kFrameB.size());
}

TEST(PcapngReader, EachInterfaceKeepsItsOwnTimestampResolutionAndOffset) {
  Pcapng f;
  f.Section()
      .Interface(decode::kDltEthernet, 0, /*tsresol=*/9)  // nanoseconds
      .Interface(decode::kDltEthernet, 0, /*tsresol=*/0x80 | 10,
                 /*tsoffset=*/1700000000)                 // 1/1024 s, seconds from an offset
      .Interface(decode::kDltEthernet, 0, /*tsresol=*/3)  // milliseconds
      .Enhanced(0, 1700000000123456789, kFrameA)
      .Enhanced(1, 5 * 1024 + 512, kFrameA)
      .Enhanced(2, 1700000007250, kFrameA);
  auto reader = OpenBytes(f.bytes());
  ASSERT_TRUE(reader.ok()) << reader.status();
  const Read r = ReadAll(**reader);
  ASSERT_EQ(r.frames.size(), 3u);
  EXPECT_EQ(r.frames[0].ts, absl::FromUnixNanos(1700000000123456789));
  EXPECT_EQ(r.frames[1].ts, absl::FromUnixMillis(1700000005500));
  EXPECT_EQ(r.frames[2].ts, absl::FromUnixMillis(1700000007250));
}

TEST(PcapngReader, ABigEndianSectionAfterALittleEndianOneStartsItsOwnInterfaces) {
  Pcapng little;
  little.Section().Interface(decode::kDltEthernet, 0).Enhanced(0, 1000000, kFrameA);
  Pcapng big(/*big_endian=*/true);
  big.Section()
      .Interface(decode::kDltLinuxSll, 0)
      .Enhanced(0, 2000000, kFrameB)
      .Enhanced(1, 3000000, kFrameB);  // the new section has one interface only
  std::vector<std::uint8_t> bytes = little.bytes();
  bytes.insert(bytes.end(), big.bytes().begin(), big.bytes().end());
  auto reader = OpenBytes(bytes);
  ASSERT_TRUE(reader.ok()) << reader.status();
  const Read r = ReadAll(**reader);
  ASSERT_EQ(r.frames.size(), 2u);
  EXPECT_EQ(r.frames[0].datalink, decode::kDltEthernet);
  EXPECT_EQ(r.frames[1].datalink, decode::kDltLinuxSll);
  EXPECT_EQ(r.frames[1].ts, absl::FromUnixSeconds(2));
  EXPECT_EQ(r.data[1], kFrameB);
  EXPECT_EQ(r.last, NextResult::kError);
  EXPECT_THAT((*reader)->error(), HasSubstr("interface 1, which the section has not described"));
}

TEST(PcapngReader, SimpleAndObsoletePacketBlocksAreRead) {
  Pcapng f;
  f.Section()
      .Interface(decode::kDltEthernet, /*snaplen=*/6)
      .Obsolete(0, 4000000, kFrameA)
      .Simple(kFrameB)                            // longer than the snapshot: cut to it
      .Block(4, std::vector<std::uint8_t>(8, 0))  // name resolution: skipped
      .Enhanced(0, 5000000, kFrameA);
  auto reader = OpenBytes(f.bytes());
  ASSERT_TRUE(reader.ok()) << reader.status();
  const Read r = ReadAll(**reader);
  EXPECT_EQ(r.last, NextResult::kEnd);
  ASSERT_EQ(r.frames.size(), 3u);
  EXPECT_EQ(r.data[0], kFrameA);
  EXPECT_EQ(r.frames[0].ts, absl::FromUnixSeconds(4));
  // No timestamp of its own: the previous packet's, so clocks never run back.
  EXPECT_EQ(r.frames[1].ts, absl::FromUnixSeconds(4));
  EXPECT_EQ(r.frames[1].captured_length, 6u);
  EXPECT_EQ(r.frames[1].wire_length, kFrameB.size());
  EXPECT_EQ(r.frames[2].ts, absl::FromUnixSeconds(5));
}

TEST(PcapngReader, ACutLastBlockEndsWithAnErrorAfterTheWholeOnes) {
  Pcapng f;
  f.Section()
      .Interface(decode::kDltEthernet, 0)
      .Enhanced(0, 1000000, kFrameA)
      .Enhanced(0, 2000000, kFrameB);
  f.bytes().resize(f.bytes().size() - 10);
  auto reader = OpenBytes(f.bytes());
  ASSERT_TRUE(reader.ok()) << reader.status();
  const Read r = ReadAll(**reader);
  EXPECT_EQ(r.frames.size(), 1u);
  EXPECT_EQ(r.last, NextResult::kError);
  EXPECT_THAT((*reader)->error(),
              HasSubstr("test.pcapng: truncated file: a block of 40 bytes has 30"));
  EXPECT_THAT((*reader)->error(), HasSubstr("at byte 92"));
  Frame frame;
  EXPECT_EQ((*reader)->Next(frame), NextResult::kError);  // stays stopped
}

TEST(PcapngReader, DamageIsRefusedWithWhatAndWhere) {
  struct Case {
    const char* name;
    std::function<void(Pcapng&)> build;
    const char* error;
  };
  const std::vector<Case> cases = {
      {"no section header", [](Pcapng& f) { f.Interface(1, 0); },
       "does not start with a section header"},
      {"major version 2", [](Pcapng& f) { f.Section(2); }, "major version 2 is not 1"},
      {"packet before any interface", [](Pcapng& f) { f.Section().Enhanced(0, 1, kFrameA); },
       "interface 0, which the section has not described"},
      {"captured length beyond the block",
       [](Pcapng& f) {
         f.Section().Interface(1, 0).Enhanced(0, 1, kFrameA);
         f.bytes()[52 + 8 + 12] = 200;  // the EPB's captured length
       },
       "200 captured bytes in a block with room for 8"},
      {"trailing length differs",
       [](Pcapng& f) {
         f.Section().Interface(1, 0);
         f.bytes().back() = 1;
       },
       "at its end differs"},
      {"length not a multiple of 4",
       [](Pcapng& f) {
         f.Section().Interface(1, 0);
         f.bytes()[28 + 4] = 21;
       },
       "block length 21 is not a multiple of 4"},
      {"huge block",
       [](Pcapng& f) {
         f.Section().Interface(1, 0);
         f.bytes()[28 + 7] = 0x40;
       },
       "over the limit"},
      {"too fine a resolution", [](Pcapng& f) { f.Section().Interface(1, 0, 20); },
       "if_tsresol 10^-20"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Pcapng f;
    c.build(f);
    auto reader = OpenBytes(f.bytes());
    // Damage before the first packet fails the open; after it, the read.
    const std::string error = reader.ok() ? (ReadAll(**reader), (*reader)->error())
                                          : std::string(reader.status().message());
    EXPECT_THAT(error, HasSubstr(c.error));
  }
}

std::string WriteFile(const std::string& name, const std::vector<std::uint8_t>& bytes) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::FILE* out = std::fopen(path.c_str(), "wb");
  if (out == nullptr) {
    ADD_FAILURE() << "cannot write " << path;
    return path;
  }
  std::fwrite(bytes.data(), 1, bytes.size(), out);
  std::fclose(out);
  return path;
}

TEST(PcapSourceTest, AFilterAppliesToEachInterfaceByItsLinkType) {
  // The same TCP/IPv4 packet (10.0.0.1:1234 -> 10.0.0.2:80, SYN) framed as Ethernet on one
  // interface and as raw IP on the other, and a UDP one: "tcp" keeps both TCP frames.
  std::vector<std::uint8_t> ip = {0x45, 0, 0,  40, 0,    1,    0,    0,    64, 6,  0, 0, 10, 0,
                                  0,    1, 10, 0,  0,    2,    0x04, 0xd2, 0,  80, 0, 0, 0,  1,
                                  0,    0, 0,  0,  0x50, 0x02, 0xff, 0xff, 0,  0,  0, 0};
  std::vector<std::uint8_t> udp = ip;
  udp[9] = 17;
  std::vector<std::uint8_t> ether = {0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 6, 0x08, 0x00};
  ether.insert(ether.end(), ip.begin(), ip.end());
  Pcapng f;
  f.Section()
      .Interface(decode::kDltEthernet, 262144)
      .Interface(decode::kDltLinktypeRaw, 65535)
      .Enhanced(0, 1000000, ether)
      .Enhanced(1, 2000000, udp)
      .Enhanced(1, 3000000, ip);
  const std::string path = WriteFile("two_link_types.pcapng", f.bytes());

  auto source = PcapSource::OpenOffline(path, "tcp");
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_EQ((*source)->datalink(), decode::kDltEthernet);
  Frame frame;
  std::vector<int> seen;
  while ((*source)->Next(frame) == NextResult::kPacket) {
    seen.push_back(frame.datalink);
  }
  EXPECT_THAT(seen, ::testing::ElementsAre(decode::kDltEthernet, decode::kDltLinktypeRaw));
  EXPECT_GT((*source)->progress(), 0.99);

  // A filter no link type of the file can take is refused at open, naming it.
  auto bad = PcapSource::OpenOffline(path, "tcp and (");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("two_link_types.pcapng"));
}

// Writes `bytes` gzip-compressed, as tcpdump -z gzip and Wireshark do.
std::string WriteGzip(const std::string& name, const std::vector<std::uint8_t>& bytes) {
  const std::string path = ::testing::TempDir() + "/" + name;
  gzFile gz = gzopen(path.c_str(), "wb");
  EXPECT_NE(gz, nullptr);
  EXPECT_EQ(gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  gzclose(gz);
  return path;
}

std::vector<std::vector<std::uint8_t>> Frames(PcapSource& source, NextResult* last) {
  std::vector<std::vector<std::uint8_t>> frames;
  Frame frame;
  while ((*last = source.Next(frame)) == NextResult::kPacket) {
    frames.emplace_back(frame.data, frame.data + frame.captured_length);
  }
  return frames;
}

TEST(PcapSourceTest, GzipCompressedPcapAndPcapngAreReadAsPlainOnes) {
  Pcapng ng;
  ng.Section()
      .Interface(decode::kDltEthernet, 0)
      .Interface(decode::kDltLinktypeRaw, 0)
      .Enhanced(0, 1000000, kFrameA)
      .Enhanced(1, 2000000, kFrameB);
  // A classic pcap (microseconds, Ethernet) with the same two frames.
  std::vector<std::uint8_t> pcap = {0xd4, 0xc3, 0xb2, 0xa1, 2,    0,    4, 0, 0, 0, 0, 0,
                                    0,    0,    0,    0,    0xff, 0xff, 0, 0, 1, 0, 0, 0};
  for (const auto& [seconds, data] : {std::pair{1, kFrameA}, std::pair{2, kFrameB}}) {
    const std::uint32_t fields[] = {static_cast<std::uint32_t>(seconds), 0,
                                    static_cast<std::uint32_t>(data.size()),
                                    static_cast<std::uint32_t>(data.size())};
    for (std::uint32_t v : fields) {
      for (int i = 0; i < 4; ++i) {
        pcap.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
      }
    }
    pcap.insert(pcap.end(), data.begin(), data.end());
  }
  for (const auto& [name, bytes] :
       {std::pair{"two.pcapng.gz", ng.bytes()}, std::pair{"two.pcap.gz", pcap}}) {
    SCOPED_TRACE(name);
    auto source = PcapSource::OpenOffline(WriteGzip(name, bytes), "");
    ASSERT_TRUE(source.ok()) << source.status();
    NextResult last = NextResult::kPacket;
    EXPECT_THAT(Frames(**source, &last), ::testing::ElementsAre(kFrameA, kFrameB));
    EXPECT_EQ(last, NextResult::kEnd);
    EXPECT_GT((*source)->progress(), 0.99);
  }
}

TEST(PcapSourceTest, ACutGzipCaptureEndsWithAnErrorThatSaysSo) {
  // The compressed file is cut right after a full flush that follows a whole block, so what
  // it still holds decompresses to whole blocks: zlib then reports the end of data as a
  // clean end, and only its error state tells the cut from the end of the capture.
  Pcapng head;
  head.Section().Interface(decode::kDltEthernet, 0);
  for (int i = 0; i < 50; ++i) {
    head.Enhanced(0, 1000000 + i, kFrameB);
  }
  Pcapng tail;
  for (int i = 0; i < 50; ++i) {
    tail.Enhanced(0, 2000000 + i, kFrameA);
  }
  const std::string path = ::testing::TempDir() + "/cut.pcapng.gz";
  gzFile gz = gzopen(path.c_str(), "wb");
  ASSERT_NE(gz, nullptr);
  gzwrite(gz, head.bytes().data(), static_cast<unsigned>(head.bytes().size()));
  gzflush(gz, Z_FULL_FLUSH);
  const auto cut = static_cast<off_t>(gzoffset(gz));
  gzwrite(gz, tail.bytes().data(), static_cast<unsigned>(tail.bytes().size()));
  gzclose(gz);
  ASSERT_EQ(truncate(path.c_str(), cut), 0);

  auto source = PcapSource::OpenOffline(path, "");
  ASSERT_TRUE(source.ok()) << source.status();
  NextResult last = NextResult::kPacket;
  EXPECT_EQ(Frames(**source, &last).size(), 50u);
  EXPECT_EQ(last, NextResult::kError);
  EXPECT_THAT((*source)->error(), HasSubstr("gzip: unexpected end of file"));
}

TEST(PcapSourceTest, APcapngOfOnlyUndecodableInterfacesIsRefusedAtOpen) {
  Pcapng f;
  f.Section().Interface(/*LINKTYPE_USB_LINUX=*/189, 0).Enhanced(0, 1000000, kFrameA);
  const std::string path = WriteFile("usb.pcapng", f.bytes());
  auto source = PcapSource::OpenOffline(path, "");
  ASSERT_FALSE(source.ok());
  EXPECT_THAT(source.status().message(), HasSubstr("unsupported link type"));
}

}  // namespace
}  // namespace relaywatch::capture
