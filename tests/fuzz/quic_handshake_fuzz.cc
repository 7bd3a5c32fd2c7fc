// Fuzz target for the timing of a QUIC connection's opening (detectors/relay/quic_handshake.h):
// long headers, the Initial packets it decrypts, and the ACK frames it reads in them.
//
// The input is one UDP conversation: records (fuzz::ForEachRecord, 2-byte length, so that a
// client's 1200-byte Initial fits) whose control byte's bit 0 is the direction (0 the client)
// and bits 1-7 the time step before the datagram (x 2 ms). Besides crashes and sanitizer
// reports, these contracts abort the run:
// - legs are never negative, and no longer than the conversation;
// - an originator leg needs the client's answer (settled);
// - a TTL is reported only for a side that sent.
//
// Seeds: tests/fuzz/corpus/quic_handshake_fuzz/, the first 12 datagrams of real connections
// from lab captures (`make_seeds.py --quic-seed NAME PCAP CLIENT_PORT`): Chromium 150 ms away
// through a routed relay (its Initial resent, the answer timed by its acknowledgement),
// Chromium near, and ngtcp2 on loopback.

#include "detectors/relay/quic_handshake.h"

#include <cstddef>
#include <cstdint>

#include "absl/time/time.h"

#include "tests/fuzz/fuzz_util.h"

namespace fuzz = relaywatch::fuzz;
using relaywatch::detectors::relay::QuicHandshake;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  QuicHandshake q;
  const absl::Time start = absl::FromUnixSeconds(1700000000);
  absl::Time now = start;
  bool sent[2] = {false, false};
  fuzz::ForEachRecord(fuzz::Bytes(data, size), 2, [&](std::uint8_t control, fuzz::Bytes payload) {
    const int from = control & 1;
    now += absl::Milliseconds(2 * (control >> 1));
    sent[from] = true;
    q.OnDatagram(now, from, payload, static_cast<std::uint8_t>(64 - from));
  });
  const absl::Duration span = now - start;
  for (const auto& leg : {q.responder_leg(), q.originator_leg()}) {
    if (leg) {
      RW_FUZZ_CHECK(*leg >= absl::ZeroDuration() && *leg <= span);
    }
  }
  if (q.originator_leg()) {
    RW_FUZZ_CHECK(q.settled());
  }
  RW_FUZZ_CHECK(q.originator_ttl() == 0 || sent[0]);
  RW_FUZZ_CHECK(q.responder_ttl() == 0 || sent[1]);
  return 0;
}
