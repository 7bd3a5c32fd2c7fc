// Fuzz target for the STUN/TURN parser (detectors/common/stun.h).
//
// The whole input is parsed as one datagram (with and without RFC 3489 acceptance), as
// ChannelData (datagram and stream forms), as what TURN relays for a peer, and as a TCP/TLS stream
// cut into frames by StunFrameLength. Besides crashes and sanitizer reports, these contracts abort
// the run:
// - IsStun() agrees with ParseStun() on the header checks, and a classic message is accepted
//   only when asked for;
// - text attributes stay within kMaxStunTextBytes, a verified FINGERPRINT implies a message
//   of at least 28 bytes, addresses have a family;
// - ChannelData data, and what a Send or Data indication relays, lies inside the input; a
//   relayed datagram names either its channel or its peer;
// - TurnStreamReader (byte 0 picks how the rest is cut into segments, gaps and bytes the
//   snaplen cut): a frame's head is its first bytes (up to kTurnFrameHeadBytes), a frame
//   kept whole has its length; a stream of whole frames gives the same frames whether it
//   comes in one segment or (after its first frame) cut anywhere, as StunFrameLength cuts it.
//
// Seeds: tests/fuzz/corpus/stun_fuzz/ (RFC 5769 vectors and the unit tests' messages).

#include "detectors/common/stun.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "detectors/common/turn_stream.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

namespace common = relaywatch::detectors::common;

void CheckAddress(const std::optional<common::StunAddress>& a) {
  if (a) {
    RW_FUZZ_CHECK(a->ip.is_v4() || a->ip.is_v6());
  }
}

void CheckMessage(const common::StunMessage& m, common::Bytes bytes) {
  RW_FUZZ_CHECK(m.length + common::kStunHeaderBytes == bytes.size());
  RW_FUZZ_CHECK(m.length % 4 == 0);
  RW_FUZZ_CHECK(m.type < 0x4000);
  RW_FUZZ_CHECK(m.method < 0x1000);
  for (const std::string* s : {&m.username, &m.software, &m.realm, &m.nonce}) {
    RW_FUZZ_CHECK(s->size() <= common::kMaxStunTextBytes);
  }
  if (m.error_code) {
    RW_FUZZ_CHECK(m.error_code->code >= 300 && m.error_code->code <= 699);
    RW_FUZZ_CHECK(m.error_code->reason.size() <= common::kMaxStunTextBytes);
  }
  if (m.fingerprint) {
    RW_FUZZ_CHECK(bytes.size() >= common::kStunHeaderBytes + 8);
    RW_FUZZ_CHECK(!m.classic);
  }
  if (m.channel_number) {
    RW_FUZZ_CHECK(*m.channel_number >= 0x4000 && *m.channel_number <= 0x7fff);
  }
  CheckAddress(m.mapped_address);
  CheckAddress(m.xor_mapped_address);
  CheckAddress(m.xor_peer_address);
  CheckAddress(m.xor_relayed_address);
  CheckAddress(m.alternate_server);
  RW_FUZZ_CHECK(!common::StunMethodName(m.method).empty());
  RW_FUZZ_CHECK(!common::StunClassName(m.message_class).empty());
}

void RunDatagram(common::Bytes bytes) {
  common::StunMessage strict;
  common::StunMessage classic;
  const common::StunParseStatus s = common::ParseStun(bytes, strict);
  const common::StunParseStatus c =
      common::ParseStun(bytes, classic, common::StunParseOptions{.allow_classic = true});
  RW_FUZZ_CHECK(!common::StunParseStatusName(s).empty());
  if (s == common::StunParseStatus::kOk) {
    RW_FUZZ_CHECK(common::IsStun(bytes));
    RW_FUZZ_CHECK(!strict.classic && strict.cookie == common::kStunMagicCookie);
    RW_FUZZ_CHECK(c == common::StunParseStatus::kOk && !classic.classic);
    CheckMessage(strict, bytes);
  }
  if (c == common::StunParseStatus::kOk) {
    CheckMessage(classic, bytes);
    RW_FUZZ_CHECK(classic.classic == (classic.cookie != common::kStunMagicCookie));
  }
  if (!common::IsStun(bytes)) {
    RW_FUZZ_CHECK(s != common::StunParseStatus::kOk);
  }

  for (bool stream : {false, true}) {
    common::ChannelData cd;
    if (common::ParseChannelData(bytes, cd, stream)) {
      RW_FUZZ_CHECK(cd.channel >= 0x4000 && cd.channel <= 0x7fff);
      RW_FUZZ_CHECK(cd.data.data() == bytes.data() + 4);
      RW_FUZZ_CHECK(cd.data.size() + 4 <= bytes.size());
    }
  }
  common::TurnRelayed relayed;
  if (common::ParseTurnRelayed(bytes, relayed)) {
    RW_FUZZ_CHECK(relayed.channel.has_value() != relayed.peer.has_value());
    RW_FUZZ_CHECK(relayed.data.data() >= bytes.data() &&
                  relayed.data.data() + relayed.data.size() <= bytes.data() + bytes.size());
    CheckAddress(relayed.peer);
  }
}

void RunStream(common::Bytes bytes) {
  // Frames back to back, as STUN/TURN over TCP or TLS carries them.
  while (!bytes.empty()) {
    const std::size_t n = common::StunFrameLength(bytes);
    if (n == 0 || n > bytes.size()) {
      return;
    }
    const common::Bytes frame = bytes.first(n);
    common::StunMessage m;
    common::ChannelData cd;
    if (common::ParseStun(frame, m) == common::StunParseStatus::kOk) {
      CheckMessage(m, frame);
    } else {
      (void)common::ParseChannelData(frame, cd, true);
    }
    bytes = bytes.subspan(n);
  }
}

struct Frame {
  std::size_t length;
  std::string head;
  std::string whole;
  bool operator==(const Frame&) const = default;
};

// Feeds `bytes` to a reader that keeps frames of up to 512 bytes: the first `first` bytes as
// one segment, then segments of `step` bytes (1-8), every one with `gap` and `skip` (from
// the fuzzer) applied as said: a gap before the segment, the segment's last bytes uncaptured.
std::vector<Frame> Read(common::Bytes bytes, std::size_t first, std::size_t step,
                        std::uint8_t gap_every, std::uint8_t skip_every) {
  common::TurnStreamReader<512> reader;
  std::vector<Frame> frames;
  const auto on_frame = [&](const common::TurnFrame& f) {
    RW_FUZZ_CHECK(f.length >= 4);
    RW_FUZZ_CHECK(f.head.size() == std::min(f.length, common::kTurnFrameHeadBytes));
    RW_FUZZ_CHECK(f.whole.empty() || f.whole.size() == f.length);
    RW_FUZZ_CHECK(f.whole.empty() == (f.length > 512));
    if (!f.whole.empty())
      RW_FUZZ_CHECK(std::equal(f.head.begin(), f.head.end(), f.whole.begin()));
    frames.push_back({f.length, std::string(f.head.begin(), f.head.end()),
                      std::string(f.whole.begin(), f.whole.end())});
  };
  std::size_t at = 0;
  for (int n = 0; at < bytes.size(); ++n) {
    const std::size_t take = std::min(n == 0 ? first : step, bytes.size() - at);
    const bool gap = gap_every != 0 && n % gap_every == gap_every - 1;
    const bool cut = skip_every != 0 && n % skip_every == skip_every - 1 && take > 1;
    reader.Feed(bytes.subspan(at, cut ? take - 1 : take), true, gap, on_frame);
    if (cut)
      reader.Skip(1);
    at += take;
  }
  RW_FUZZ_CHECK(reader.frames() == frames.size());
  return frames;
}

void RunReader(common::Bytes bytes) {
  if (bytes.size() < 2)
    return;
  const std::uint8_t control = bytes[0];
  const common::Bytes stream = bytes.subspan(1);
  const std::size_t first = common::StunFrameLength(stream);
  const std::size_t step = 1 + (control & 7);
  const std::vector<Frame> whole_segment = Read(stream, stream.size(), step, 0, 0);
  const std::vector<Frame> cut = Read(stream, first == 0 ? stream.size() : first, step, 0, 0);
  if (common::WholeTurnFrames(stream)) {
    // A stream of whole frames: every frame, however it came.
    std::vector<Frame> expected;
    for (common::Bytes rest = stream; !rest.empty();) {
      const std::size_t n = common::StunFrameLength(rest);
      expected.push_back({n, std::string(rest.begin(), rest.begin() + std::min<std::size_t>(n, 8)),
                          n <= 512 ? std::string(rest.begin(), rest.begin() + n) : std::string()});
      rest = rest.subspan(n);
    }
    RW_FUZZ_CHECK(whole_segment == expected);
    RW_FUZZ_CHECK(cut == expected);
  } else {
    RW_FUZZ_CHECK(whole_segment.empty());  // never taken up
  }
  // Gaps and uncaptured bytes: the reader loses its place and finds one again (perhaps a
  // wrong one: bytes inside a frame may look like a short whole one); each frame is checked.
  (void)Read(stream, first == 0 ? stream.size() : first, step, (control >> 3) & 3,
             (control >> 5) & 7);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const common::Bytes bytes(data, size);
  RunDatagram(bytes);
  RunStream(bytes);
  RunReader(bytes);
  return 0;
}
