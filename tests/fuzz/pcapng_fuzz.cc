// Fuzz target for the pcapng reader (capture/pcapng_reader.h) and the decoder behind it.
//
// Input: a pcapng file. Every frame it yields is decoded with its interface's link type.
//
// Besides crashes and sanitizer reports, these contracts abort the run:
// - a frame's captured bytes lie in a block no larger than kMaxBlockBytes and are readable;
// - its captured length is at most its wire length, and its time is finite;
// - the reader ends with kEnd, or with kError and a message naming the file and the byte;
// - it yields no more frames than the input holds 16-byte packet blocks.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/time.h"

#include "capture/decode/decoder.h"
#include "capture/pcapng_reader.h"
#include "tests/fuzz/fuzz_util.h"

namespace capture = relaywatch::capture;
namespace decode = relaywatch::decode;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;  // fmemopen refuses a zero-length buffer
  }
  std::vector<std::uint8_t> bytes(data, data + size);  // fmemopen wants a writable buffer
  std::FILE* file = fmemopen(bytes.data(), bytes.size(), "rb");
  if (file == nullptr) {
    return 0;
  }
  auto reader = capture::PcapngReader::Open(file, "fuzz.pcapng");
  if (!reader.ok()) {
    RW_FUZZ_CHECK(absl::StartsWith(reader.status().message(), "fuzz.pcapng: "));
    return 0;
  }
  capture::Frame frame;
  decode::DecodedPacket packet;
  decode::DecodeCounters counters;
  std::size_t frames = 0;
  std::uint32_t sum = 0;
  capture::NextResult r;
  while ((r = (*reader)->Next(frame)) == capture::NextResult::kPacket) {
    ++frames;
    RW_FUZZ_CHECK(frames <= size / 16);
    RW_FUZZ_CHECK(frame.captured_length <= capture::PcapngReader::kMaxBlockBytes);
    RW_FUZZ_CHECK(frame.captured_length <= frame.wire_length);
    RW_FUZZ_CHECK(frame.ts != absl::InfiniteFuture() && frame.ts != absl::InfinitePast());
    for (std::uint32_t i = 0; i < frame.captured_length; ++i) {
      sum += frame.data[i];  // ASan reports bytes outside the block
    }
    decode::DecodeFrame(frame.datalink, {frame.data, frame.captured_length}, frame.wire_length,
                        frame.ts, packet, counters);
  }
  RW_FUZZ_CHECK(r == capture::NextResult::kEnd || r == capture::NextResult::kError);
  const std::string& error = (*reader)->error();
  RW_FUZZ_CHECK((r == capture::NextResult::kError) == !error.empty());
  if (r == capture::NextResult::kError) {
    RW_FUZZ_CHECK(absl::StartsWith(error, "fuzz.pcapng: "));
    RW_FUZZ_CHECK(absl::StrContains(error, "at byte "));
  }
  return static_cast<int>(sum & 0);
}
