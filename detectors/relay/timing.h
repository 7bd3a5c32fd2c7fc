#pragma once

// The timing arithmetic of the relay detector, free of packets and flows so that every
// rule can be unit-tested on exact numbers. All times are packet timestamps at the sensor.
//
// Methods (docs/detectors/relay.md; ../shared/docs/detection-research.md section 6):
//  - TCP handshake split at a mid-path sensor (Jiang & Dovrolis): SYN -> SYN/ACK is the
//    responder's leg, SYN/ACK -> ACK the originator's; Karn's rule drops retransmitted ones.
//  - Passive data -> ACK samples per direction, floor and smoothed value.
//  - Client turnaround: server flight -> client's next data. A byte relay forwards the flight
//    to the real client and its answer back, so the turnaround holds the hidden leg while
//    the TCP RTT holds only the visible one (Yung 2002; Yang & Huang 2005).
//  - Keystroke timing and stepping-stone correlation (Zhang & Paxson 2000).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/time/time.h"

#include "capture/base/packet_time.h"

namespace relaywatch::detectors::relay {

// Light in fibre covers about 200 km per ms one way, so 100 km per ms of round trip.
inline constexpr double kFibreKmPerRttMs = 100.0;

// TCP sequence comparison modulo 2^32 (RFC 9293 section 3.4).
inline bool SeqLess(std::uint32_t a, std::uint32_t b) {
  return static_cast<std::int32_t>(a - b) < 0;
}
inline bool SeqLessEq(std::uint32_t a, std::uint32_t b) {
  return !SeqLess(b, a);
}

double ToMs(absl::Duration d);

// Median of `values` (which it reorders); nullopt when empty.
std::optional<double> Median(std::vector<double>& values);
// The q-quantile (0..1) by nearest rank; nullopt when empty.
std::optional<double> Quantile(std::vector<double>& values, double q);

// The three packets of the TCP handshake. Direction 0 = originator -> responder.
class HandshakeSplit {
 public:
  void OnPacket(PacketTime ts, int direction, std::uint8_t flags, std::uint32_t seq,
                std::uint32_t ack, std::uint32_t payload_length, std::uint8_t ttl);
  // SYN -> SYN/ACK: sensor <-> responder. Nullopt when not seen or retransmitted.
  std::optional<absl::Duration> responder_leg() const;
  // SYN/ACK -> ACK: sensor <-> originator.
  std::optional<absl::Duration> originator_leg() const;
  // SYN/ACK -> the originator's first data, when it spoke first (a client-first protocol)
  // and neither SYN/ACK nor data came twice or early (TFO). A TCP-ending relay (SOCKS,
  // HTTP CONNECT, an SSH forward) answers its far client only once this connection is up,
  // and the far client's data comes a hidden round trip later; one packet started the wait,
  // so how a server flight arrived cannot lengthen it. A direct client writes at once.
  std::optional<absl::Duration> connect_wait() const;
  bool retransmitted() const { return syns_ > 1 || syn_acks_ > 1; }
  // IP TTL of the first SYN and of the first SYN/ACK (0: not seen). A host's own packets and
  // those it forwards for another device differ in it: forwarding decrements it.
  std::uint8_t originator_ttl() const { return syn_ttl_; }
  std::uint8_t responder_ttl() const { return syn_ack_ttl_; }

  // An ACK that carries data after this long is an application's first write, not the
  // kernel's answer to the SYN/ACK (TFO, odd stacks): not a sample.
  static constexpr absl::Duration kMaxDataAckDelay = absl::Milliseconds(500);

 private:
  int syns_ = 0;
  int syn_acks_ = 0;
  std::uint32_t syn_ack_seq_ = 0;
  std::uint8_t syn_ttl_ = 0;
  std::uint8_t syn_ack_ttl_ = 0;
  PacketTime syn_ = absl::InfinitePast();
  PacketTime syn_ack_ = absl::InfinitePast();
  PacketTime ack_ = absl::InfinitePast();
  PacketTime first_data_ = absl::InfinitePast();
  std::uint32_t first_data_seq_ = 0;
  int first_data_direction_ = -1;  // who sent the connection's first payload
  bool first_data_again_ = false;  // the originator's first payload came again
};

// One quantile of a stream in constant space: the P-square algorithm (Jain & Chlamtac,
// CACM 28(10), 1985). Five markers hold the least, the p/2, p and (1+p)/2 quantiles and the
// greatest; each sample moves the markers' ranks, and a marker more than one rank off its
// ideal rank steps toward it, its height following a parabola through its neighbours. The
// first kExact samples are kept and the quantile is exact; the markers then start from
// their exact ranks among them (five samples, the paper's start, leave the p = 0.15 marker
// at the median for dozens of samples).
class StreamQuantile {
 public:
  static constexpr int kExact = 20;

  explicit StreamQuantile(double p) : p_(static_cast<float>(p)) {}
  void Add(double x);
  std::optional<double> value() const;  // nullopt before the first sample
  std::uint32_t count() const { return count_; }

 private:
  // Where a marker belongs among count_ samples: rank 1 + (count_ - 1) x its share.
  double IdealRank(int marker) const;
  double Parabolic(int i, int step) const;
  double Linear(int i, int step) const;

  float p_;
  std::uint32_t count_ = 0;
  // Up to kExact samples, ascending; after them, [0..4] are the markers' heights.
  float height_[kExact] = {};
  std::int32_t rank_[5] = {};  // the markers' 1-based ranks
};

// Round-trip samples of one leg, however they were taken (data -> ACK, a STUN transaction).
//
// The floor is robust: the samples' 5th percentile, never above the kLowest-th lowest.
// Queueing only adds delay, so a floor it is; but the least of hundreds of samples is the
// luckiest one, set by jitter on the path rather than its length (a path whose delay varies
// both ways about its mean, as a radio link or a delay line does, reads 2-3 standard
// deviations short). Ignoring the lowest twentieth, at most four samples, costs nothing on a
// queueing path: it needs five unqueued samples, not one. Up to 19 samples it is the least.
// The 15th percentile (`low_quantile`) reads one deviation short on such a path and needs
// 15 % of the samples unqueued; the controller's round trip is read from both (relay.md).
class RttSamples {
 public:
  // The 15th percentile is given from `quantile_after` samples on.
  explicit RttSamples(std::uint32_t quantile_after = kLowQuantileSamples)
      : quantile_after_(quantile_after) {}
  void Add(absl::Duration sample);

  std::optional<absl::Duration> floor() const;
  // The samples' 15th percentile, from quantile_after samples on.
  std::optional<absl::Duration> low_quantile() const;
  std::optional<absl::Duration> smoothed() const;  // RFC 6298 SRTT of the samples
  std::uint32_t count() const { return count_; }

  static constexpr int kLowest = 5;
  static constexpr double kLowQuantile = 0.15;
  static constexpr std::uint32_t kLowQuantileSamples = 20;

 private:
  absl::Duration lowest_[kLowest];  // the least samples, ascending (the first count_ set)
  absl::Duration srtt_ = absl::ZeroDuration();
  StreamQuantile low_{kLowQuantile};  // in ms
  std::uint32_t count_ = 0;
  std::uint32_t quantile_after_;
};

// How a data segment arrived at the sensor, against the bytes of its direction seen before.
enum class SegmentArrival {
  kNew,     // beyond every byte seen: sent once, in order
  kFill,    // bytes never seen, behind later ones: reordered on the way, or sent again after
            // a loss before the sensor; either way this is its first pass here
  kRepeat,  // bytes seen before (in part at least): a retransmission
};

// Passive RTT from one direction's data and the other direction's ACKs: the round trip from
// the sensor to the data's receiver and back. A segment is sampled only when it was sent once
// (Karn) and acknowledged exactly at its end, so a cumulative ACK of several segments, which
// may have waited for a delayed-ACK timer, yields at most one sample. Holes below the highest
// byte seen are remembered (the newest kHoles), so a segment that fills one is told from a
// retransmission: a path whose jitter reorders (netem's) scrambles most flights, and counted
// as retransmissions they were a lossy path's.
class AckRtt {
 public:
  SegmentArrival OnData(PacketTime ts, std::uint32_t seq, std::uint32_t length);
  void OnAck(PacketTime ts, std::uint32_t ack);

  const RttSamples& rtt() const { return rtt_; }
  std::optional<absl::Duration> floor() const { return rtt_.floor(); }
  std::optional<absl::Duration> low_quantile() const { return rtt_.low_quantile(); }
  std::optional<absl::Duration> smoothed() const { return rtt_.smoothed(); }
  std::uint32_t samples() const { return rtt_.count(); }
  std::uint32_t retransmissions() const { return retransmissions_; }
  std::uint32_t out_of_order() const { return out_of_order_; }

  static constexpr int kOutstanding = 32;
  static constexpr int kHoles = 8;

 private:
  struct Segment {
    std::uint32_t end = 0;
    PacketTime sent;
    bool retransmitted = false;
  };
  struct Hole {
    std::uint32_t begin = 0;
    std::uint32_t end = 0;
  };
  // Allocated with the first data: most flows a gateway sees under a scan or flood never
  // carry any.
  struct Window {
    Segment outstanding[kOutstanding];  // ring of the newest unacknowledged segments
    Hole holes[kHoles];                 // oldest first; a hole forgotten reads as seen
  };

  // Removes [seq, end) from the hole that holds it whole; false when none does.
  bool FillHole(std::uint32_t seq, std::uint32_t end);
  void AddHole(std::uint32_t begin, std::uint32_t end);
  void EraseHole(int i);

  std::unique_ptr<Window> window_;
  int count_ = 0;
  int head_ = 0;
  int holes_ = 0;
  bool have_high_ = false;
  std::uint32_t high_ = 0;  // highest sequence sent so far
  RttSamples rtt_;
  std::uint32_t retransmissions_ = 0;
  std::uint32_t out_of_order_ = 0;
};

// Packets of one side of a connection that the sensor never saw, told by the IPv4 ID. Linux
// numbers each connection's packets 1, 2, 3... (a per-socket counter), so a number skipped
// is a packet lost between the sender and the sensor, a laptop's Wi-Fi; its retransmission
// then reaches the sensor first and looks like the packet itself, sent late, where Karn's
// rule (which needs both copies) cannot help. A sender is judged once at least kMinSteps of
// its steps were +1 and at least three in four were: a global counter (Windows) with other
// traffic between, or random IDs, rarely give that, and when one does, a packet is taken as
// lost after an unrelated jump, which only refuses a sample. ID 0 says nothing (a SYN/ACK,
// or a stack without a counter); a packet larger than a wire segment was merged at the
// sensor (GRO), so the step after it counts its segments and is not judged.
class IpIdGaps {
 public:
  // Returns true when this packet follows one of the same sender's that was not seen.
  bool OnPacket(std::uint16_t id, std::uint32_t payload_length);

  static constexpr std::uint32_t kMinSteps = 3;
  static constexpr std::uint32_t kMaxWireSegment = 1460;

 private:
  bool seen_ = false;
  bool merged_ = false;  // the last packet held several segments
  std::uint16_t last_ = 0;
  std::uint32_t ones_ = 0;    // steps of +1
  std::uint32_t others_ = 0;  // other steps (numbers skipped, or backwards)
};

// Client turnarounds: for each client data segment that answers a server flight, the time
// from the flight's last segment to it. Samples are refused when the flight or the answer
// holds a retransmission (loss delays either), and past `max_gap` (a human or an
// application pause, not a network delay). A sample is dropped (`interrupted`) when the
// server's next data does not acknowledge the answer: the server was still sending its
// flight when the answer left, so the client did not wait for that flight's end (a far
// client's request sent behind its Finished, split from it by jitter and landing after a
// session ticket; an SSH client's KEXINIT sent before the server's). Sequence numbers
// decide, not timing, so the rule holds whatever the jitter. When the ticket flight was
// complete before the request arrived, the server's answer acknowledges the request and
// sequence numbers cannot tell; the record layer can (OnUnawaitedClientData).
class Turnarounds {
 public:
  Turnarounds(std::size_t max_samples, absl::Duration max_gap)
      : max_samples_(max_samples), max_gap_(max_gap) {}
  // `from_client`: the segment comes from the side that answers (the originator). `seq`:
  // a client segment's first sequence number; `ack`: a server segment's acknowledgement,
  // if it carries one. Without them no sample is dropped as interrupted.
  void OnData(PacketTime ts, bool from_client, bool retransmission, std::uint32_t seq = 0,
              std::optional<std::uint32_t> ack = std::nullopt);
  // A server data segment once no more samples are taken: it settles the last one.
  void OnServerData(std::optional<std::uint32_t> ack);
  // Client data that its client sent without waiting for the server (Tls13FirstData): an
  // open flight ends unanswered (`interrupted`), as the data was not waiting for it.
  void OnUnawaitedClientData();

  // The last sample stays provisional until the server's next data settles it (or none
  // comes: then the flight was over).
  const std::vector<double>& samples_ms() const { return samples_; }
  // When each sample's wait began (the flight's last segment), in the same order: the host
  // stage matches waits against the host's other connections (a revocation fetch).
  const std::vector<PacketTime>& waits_from() const { return waits_from_; }
  // How long each sample's flight took to arrive (its first segment to its last), in ms.
  const std::vector<double>& spreads_ms() const { return spreads_; }
  bool full() const { return samples_.size() >= max_samples_; }
  std::uint32_t refused() const { return refused_; }
  // Refused for taking longer than `max_gap` (of refused()): a person or an application
  // pausing, where loss is only bad luck on the wire.
  std::uint32_t slow() const { return slow_; }
  std::uint32_t interrupted() const { return interrupted_; }
  // Client answers judged so far: each became a sample, was refused, or was interrupted.
  std::size_t answers() const { return samples_.size() + refused_ + interrupted_; }
  // The client's first answer, when it became a sample (it is then samples_ms()[0]).
  std::optional<double> first_answer_ms() const {
    return first_kept_ ? std::optional<double>(samples_.front()) : std::nullopt;
  }

 private:
  std::size_t max_samples_;
  absl::Duration max_gap_;
  bool flight_open_ = false;
  bool flight_tainted_ = false;
  PacketTime flight_last_ = absl::InfinitePast();
  PacketTime flight_first_ = absl::InfinitePast();
  std::vector<double> samples_;
  std::vector<double> spreads_;
  std::vector<PacketTime> waits_from_;
  std::uint32_t refused_ = 0;
  std::uint32_t slow_ = 0;
  bool unsettled_ = false;  // the last sample waits for the server's next data
  std::uint32_t answer_seq_ = 0;
  std::uint32_t interrupted_ = 0;
  bool first_kept_ = false;
};

// One request and its answer on a connection, as another flow's possible fetch: from its
// start (the SYN for a connection's first, else the request's first data) to the
// responder's last data before the client's next request (InfiniteFuture: none yet).
struct Exchange {
  PacketTime start;
  PacketTime answered;
  PacketTime next_request = absl::InfiniteFuture();
};

// A connection's exchanges, in order: a request opens one (client data after the
// responder's), the responder's data answers it. A responder that speaks first (an SSH or
// SMTP banner) answers the one its connection opened. At most `max` are kept: the first
// ones (a connection that carries another's fetch is a short one).
class Exchanges {
 public:
  explicit Exchanges(std::size_t max) : max_(max) {}
  // Keeps up to `max` exchanges from here on (never fewer than before).
  void KeepUpTo(std::size_t max) { max_ = std::max(max_, max); }
  void OnOpen(PacketTime ts);
  // True when this data answers the last exchange (its first answer, or more of it: the
  // exchange's end moves on).
  bool OnData(PacketTime ts, bool from_originator);
  const std::vector<Exchange>& exchanges() const { return exchanges_; }

 private:
  std::size_t max_;
  PacketTime opened_ = absl::InfinitePast();
  bool full_ = false;  // a request past `max`: no more are kept
  std::vector<Exchange> exchanges_;
};

// Whether `fetch` fed a turnaround's wait that began at `from` and took `wait_ms`: it
// started during the wait and was answered at most `slack_ms` before the answer left, with
// no request behind it by then. A client that checks revocation or fetches a missing issuer
// (AIA, a CRL) while it verifies the server's certificate answers only once the fetch is
// back, so its wait is the fetch's round trips, not a hidden leg. A connection still
// talking (a TLS handshake's ServerHello, which its client answers at once) fed nothing.
bool FedWait(const Exchange& fetch, PacketTime from, double wait_ms, double slack_ms);

// A flow's turnaround: the lower quartile of its samples (a minority is slowed by the
// client's own work, and one may come early), or the answer its protocol demands at once
// when that is faster. A TLS client answers the server's handshake flight (its key exchange,
// or its Finished) in software as soon as the flight is in, so no hidden leg is longer than
// that answer; later answers may wait on the application (a browser's next request after it
// ran a page's script), and a browser's can make up most of a flow's samples.
double TurnaroundMs(std::vector<double> samples_ms, std::optional<double> handshake_ms);

// A server flight whose segments reached the sensor within this of each other reaches a
// relay on the laptop as one burst too: the relay reads and forwards it whole. One that came
// spread out (the server's congestion window split it, or its pacing, or a slow link) may
// be forwarded in parts, and a relay that keeps Nagle's algorithm on toward the far client
// (ssh -D and -L without a terminal, tinyproxy) holds the last, short part until the far
// client acknowledges the first: that client then answers two hidden round trips after
// the first part reached the relay, not one after the last. How far apart is apart enough
// depends on how soon the relay wakes to read; in the lab `ssh -D`/`-L` held none of 27
// flights that passed within 0.13 ms, one at 0.14, 10 of 14 at 0.3-0.6 ms and every one at
// 0.85, so 0.1 ms keeps every held flight on this side (docs/relay-quality.md).
inline constexpr double kWholeFlightSpreadMs = 0.1;

// The least turnaround a hidden leg could give this one after a spread flight: the relay
// either forwarded each part at once (the reading is the leg), or held the short tail until
// the far client acknowledged what went before, which adds less than one more leg
// (exactly a leg less the spread, when the flight was shorter than the leg). A far client
// that delays that acknowledgement (Linux: up to 40 ms) holds the tail longer than this
// knows, so the bound can exceed the leg by half that delay. Never above the reading.
double SpreadFlightBoundMs(double turnaround_ms, double spread_ms, double client_leg_ms);

struct FlowTurnaround {
  double ms = 0;
  // Every turnaround followed a spread flight: `ms` is the least the turnaround can be.
  bool lower_bound = false;
  // Every turnaround followed a spread flight and the connection's wait decided instead.
  bool by_connect_wait = false;
};

// A flow's turnaround from its samples and their flights' spreads (first segment to last,
// in the same order; empty: all whole). TurnaroundMs of them all, no more than the lower
// quartile of those after whole flights when there are any (a held turnaround is only ever
// longer). With none, TurnaroundMs of each one's SpreadFlightBoundMs: a lower bound,
// unless the connection's wait (HandshakeSplit::connect_wait, `connect_wait_ms`) tells
// which relay it was: a wait from half the bound's leg up to the reading's leg and a
// quarter is one hidden round trip (a relay that forwarded at once, or one that held and
// whose far client delayed its acknowledgement) and decides, no more than the reading. A
// shorter wait is data sent before the far client could answer (an optimistic SOCKS
// client), a longer one a client that paused: the bound stands. `handshake_ms` as for
// TurnaroundMs (it is samples_ms[0]); the client's visible leg is inside every sample and
// the wait. `early_answers`: the protocol's servers send unasked messages behind the one
// a client answers (SSH: EXT_INFO after NEWKEYS, OpenSSH's hostkeys-00 after the
// authentication, held by Nagle one server round trip), so an answer to a flight's first
// part may come before its tail: a turnaround after a spread flight caps the reading only
// with its spread added (the lab's 59.8 ms after a 10.6 ms spread, at 80 ms).
FlowTurnaround ReadTurnaround(const std::vector<double>& samples_ms,
                              const std::vector<double>& spreads_ms,
                              std::optional<double> handshake_ms, double client_leg_ms,
                              std::optional<double> connect_wait_ms = std::nullopt,
                              bool early_answers = false);

// The hidden round trip: the client's turnaround minus the visible round trip between the
// sensor and the client. Negative values (processing noise) clamp to zero.
double HiddenLegMs(double turnaround_ms, double client_leg_ms);
// The fibre distance a round trip corresponds to at 2/3 c.
double FibreKm(double rtt_ms);

// Interactive input: small client data segments after a session's setup (keystrokes, or
// what a relayed keyboard delivers), the server's answers, and their timing.
struct KeystrokeSummary {
  std::uint32_t keys = 0;
  std::optional<double> echo_ms;                 // median key -> next server data (server leg)
  std::optional<double> gap_median_ms;           // inter-key gaps below the pause threshold
  std::optional<double> clumped_fraction;        // share of those gaps below 15 ms
  std::optional<double> gap_cv;                  // their coefficient of variation
  std::optional<double> output_to_input_p10_ms;  // server output -> next key, 10th percentile
  bool obfuscated = false;  // OpenSSH >= 9.5 ObscureKeystrokeTiming (20 ms grid + chaff)
};

// OpenSSH's chaff in segments of several packets. Behind Nagle (a ProxyCommand's nc, an HTTP
// proxy; neither sets TCP_NODELAY) a round trip longer than the tick holds its equal packets
// until the last segment is acknowledged: the lab's `proxied_ssh` sent 3-6 packets of 36 bytes
// per segment at 45 ms one way, 11 at 110 ms. No segment is then one key. Yet the segments are
// nearly all whole multiples of one packet, and the packets still come one a tick while the
// session is busy. Bounded: past kMaxSizes distinct sizes a segment is counted as other.
class SegmentSizes {
 public:
  static constexpr std::size_t kMaxSizes = 32;
  // More packets than this in one segment are not a tick's: 32 ticks are 640 ms.
  static constexpr std::uint32_t kMaxPacketsPerSegment = 32;
  // The smallest SSH packet on the wire: length, a padded block and a MAC or tag.
  static constexpr std::uint32_t kMinPacketBytes = 32;

  void Add(PacketTime ts, std::uint32_t length);
  // True when at least 30 packets, in segments 80 % of which are multiples of one key-sized
  // packet (a divisor of the commonest segment), came 0.75-1.25 a tick over the busy time (the
  // gaps shorter than KeystrokeTiming::kPause).
  bool LooksCoalescedChaff(double interval_ms = 20.0) const;

 private:
  std::map<std::uint32_t, std::uint32_t> count_;  // segment size -> segments
  std::uint32_t segments_ = 0;                    // all of them, counted or other
  double busy_ms_ = 0;
  PacketTime last_ = absl::InfinitePast();
};

class KeystrokeTiming {
 public:
  // A client data segment of at most kMaxKeyBytes counts as a key.
  static constexpr std::uint32_t kMaxKeyBytes = 128;
  static constexpr std::size_t kMaxKeys = 2048;
  // A gap this long ends a typing burst: it is a pause, not an inter-key gap.
  static constexpr absl::Duration kPause = absl::Milliseconds(1000);

  // `late`: the key followed a packet of the client's the sensor never saw (IpIdGaps), so it
  // may be a copy sent again after a timeout; it counts as a key but times no reaction.
  void OnClientData(PacketTime ts, std::uint32_t length, bool late = false);
  void OnServerData(PacketTime ts, std::uint32_t length);
  // The client's FIN. A key-sized segment just before it, with nothing from the server
  // between, was the client software's goodbye (its answer to the server's channel close,
  // RFC 4254 5.3, which follows the shell's last output), not a person's key: it is taken
  // back, with its reaction if that was not taken yet.
  void OnClientFin(PacketTime ts);
  // How long the client software takes to answer, as the sensor sees it (its setup's median
  // turnaround: a fraction of a millisecond near, the round trip from far). Its answers to
  // output (window adjustments) come that late, so a reaction must be a person's least
  // reaction beyond it.
  void SetSoftwareAnswer(double ms) { software_answer_ = absl::Milliseconds(std::max(0.0, ms)); }
  // The client's banner names software without keystroke obfuscation: small segments at
  // the clock's rate (an `ssh -D` tunnel's window adjustments) are then not taken for it.
  void RuleOutObfuscation() { may_obfuscate_ = false; }
  KeystrokeSummary Summarise() const;
  // The output -> next key delays (ms) collected since the last call, in order. They go on
  // being collected after kMaxKeys keys (at most kMaxKeys between two calls): a person's
  // reactions are judged over a whole working day (the host stage's typing baseline).
  std::vector<double> TakeOutputToInput();

 private:
  std::vector<double> key_ms_;  // key times relative to the first key
  std::vector<std::uint32_t> key_size_;
  std::vector<double> echo_ms_;
  std::vector<double> output_to_input_ms_;
  PacketTime origin_ = absl::InfinitePast();
  PacketTime last_key_ = absl::InfinitePast();
  bool echo_pending_ = false;
  PacketTime last_output_ = absl::InfinitePast();  // server data larger than an echo
  bool output_pending_ = false;
  absl::Duration software_answer_ = absl::ZeroDuration();
  bool may_obfuscate_ = true;
  std::uint32_t last_key_size_ = 0;
  // The client's last data segment was a key with nothing after it yet, and what it added:
  // a rhythm entry, a reaction not yet taken (what OnClientFin takes back).
  bool key_last_ = false;
  bool key_last_timed_ = false;
  bool reaction_last_ = false;
  SegmentSizes segments_;  // every client data segment, keys or not
};

// True when an SSH identification's software version names an OpenSSH release before 9.5
// ("OpenSSH_9.2p1", "OpenSSH_for_Windows_8.1"): keystroke obfuscation came with 9.5, so such
// a client's keys are never paced by it, however its packets happen to fall.
bool PredatesKeystrokeObfuscation(std::string_view software);

// True when the client's keys look paced by OpenSSH's keystroke obfuscation: the keys have one
// size and most gaps sit on a multiple of `interval` (20 ms by default), or their median is
// about one interval (chaff between the keys: the server is >= 9.5 too). Without chaff the
// client only holds each key to its next tick, which it re-draws at 18-22 ms plus an offset
// per burst, so gaps of many ticks drift off a fixed grid: such sessions are mostly not
// recognised, and their keys are late by less than a tick.
bool LooksObfuscated(const std::vector<double>& key_ms, const std::vector<std::uint32_t>& sizes,
                     double interval_ms = 20.0);

// OFF -> ON transitions of one direction's data (Zhang & Paxson): the first data after at
// least `idle` without any. Bounded; later transitions are counted, not kept.
class OnTimes {
 public:
  OnTimes(absl::Duration idle, std::size_t max_kept) : idle_(idle), max_kept_(max_kept) {}
  void OnData(PacketTime ts);
  const std::vector<PacketTime>& times() const { return times_; }
  std::uint32_t dropped() const { return dropped_; }

 private:
  absl::Duration idle_;
  std::size_t max_kept_;
  PacketTime last_ = absl::InfinitePast();
  std::vector<PacketTime> times_;
  std::uint32_t dropped_ = 0;
};

// Stepping-stone correlation of an inbound and an outbound connection of one host: the ON
// events of the outbound one that follow an inbound ON within `delta`.
//
// `chance`: how likely as many would follow by coincidence, were the two independent. An
// outbound ON lands within `delta` after some inbound ON with probability q, the share of
// the span of both that the windows [inbound ON, + delta] cover; so the count of
// coincidences is binomial (outbound ONs, q), and `chance` its tail at `correlated`. Few ON
// periods that all match are then as telling as many, while dense ones (a chatty inbound
// stream whose windows cover a third of the time) match a third of anything.
struct SteppingStone {
  std::size_t inbound_ons = 0;
  std::size_t outbound_ons = 0;
  std::size_t correlated = 0;
  double ratio = 0;          // correlated / min(inbound_ons, outbound_ons); of packets: / outbound
  double median_lag_ms = 0;  // outbound ON - inbound ON over correlated pairs
  double chance = 1;         // P(at least `correlated` coincidences | independent)
  // Of packets only (CorrelatePackets): do the outbound gaps follow the inbound ones?
  std::size_t gap_pairs = 0;
  double gap_rho = 0;     // Spearman's rank correlation of the paired gaps
  double gap_chance = 1;  // P(rho at least this | independent), large-sample normal
};
SteppingStone CorrelateOnTimes(const std::vector<PacketTime>& inbound,
                               const std::vector<PacketTime>& outbound, absl::Duration delta);

// Output shown on a screen: the outbound flow's output ON periods (`leads`, an SSH server's
// output to the host's client) each followed within `delta` by a screen update the host sends
// its controller (`updates`, the starts of a remote-desktop server's data after kUpdateGap).
// The person behind the screen sees what the server sent once the host has drawn it; keys the
// host's client re-times (OpenSSH >= 9.5) break the input's match, not this one.
//
// Counted per lead: `outbound_ons` is the leads, `inbound_ons` the updates, `ratio`
// correlated / leads. A lead lands within `delta` before some update with probability q, the
// share of the span that the windows [update - delta, update] cover, so `chance` is the
// binomial tail (leads, q) at `correlated`: a busy screen, updating all the time, matches
// anything and decides nothing.
SteppingStone CorrelateShownOutput(const std::vector<PacketTime>& leads,
                                   const std::vector<PacketTime>& updates, absl::Duration delta);

// A remote-desktop server's data after this much silence starts a screen update: an update
// goes out in back-to-back segments, a person's keys and the echoes they draw come hundreds of
// ms apart.
inline constexpr absl::Duration kUpdateGap = absl::Milliseconds(5);

// Burst starts of an SSH client that obfuscates keystroke timing: its data after this much
// silence. While a person types, OpenSSH >= 9.5 fills every ~20 ms tick with a key or chaff;
// five ticks without a packet mean its chaff stopped, and the key that ends such a silence
// is sent at once, not on the clock.
inline constexpr absl::Duration kBurstGap = absl::Milliseconds(100);
// A burst starts only after a pause longer than the chaff's tail (1-3 s after the last key),
// so a session has fewer of them than ON periods: half the ON periods the other tests want.
inline std::uint64_t MinBurstStarts(std::uint64_t min_ons) {
  return std::max<std::uint64_t>(1, min_ons / 2);
}

// One direction's data packets, sampled for a packet-level stepping-stone test: the first
// `per_slot` of each slot of packet time, slots aligned to the epoch, so two flows of a host
// keep the same stretches of time whenever each began and whenever its windows close.
// Bounded: past `max_kept` packets are counted, not kept.
class PacketSample {
 public:
  static constexpr absl::Duration kSlot = absl::Seconds(10);
  // Fewer forwarded packets than this in a test say nothing, and a sample this small is not
  // sent on (a few hundred ms of chaff, a few seconds of keys).
  static constexpr std::size_t kMinPackets = 16;

  PacketSample(std::size_t per_slot, std::size_t max_kept)
      : per_slot_(per_slot), max_kept_(max_kept) {}
  // The slot `ts` falls in, counted from the epoch.
  static std::int64_t SlotOf(PacketTime ts) {
    return absl::ToUnixMicros(ts) / absl::ToInt64Microseconds(kSlot);
  }
  void OnData(PacketTime ts);
  // Empties the sample for the flow's next window; the current slot keeps its count, so no
  // window samples a slot beyond its first packets.
  void NextWindow() {
    times_.clear();
    dropped_ = 0;
  }
  const std::vector<PacketTime>& times() const { return times_; }
  std::uint32_t dropped() const { return dropped_; }

 private:
  std::size_t per_slot_;
  std::size_t max_kept_;
  std::int64_t slot_ = -1;
  std::size_t in_slot_ = 0;
  std::vector<PacketTime> times_;
  std::uint32_t dropped_ = 0;
};

// Packet-level stepping stone: a host that relays a connection (an `ssh -J` jump host, an
// `ssh -L` tunnel) sends each packet it gets within a millisecond or so, whatever the
// person's rhythm; OpenSSH's chaff (a packet every ~20 ms while a person types, docs/
// detectors/relay.md) hides the pauses that ON periods need, but not that. Per slot both
// samples hold (PacketSample), the outbound packets between two sampled inbound ones that
// follow the earlier within `delta` are `correlated`, and `ratio` is their share. `chance` is
// the binomial tail at the mean of each packet's own chance of that by coincidence, delta
// over the gap between the inbound packets around it: the local rate, not the average over
// the slot, since sessions typed at the same time are dense at the same time. The counts are
// packets, not ON periods. With an `offset` the window is [offset, offset + delta] after the
// inbound packet: a host behind a Wi-Fi forwards no packet sooner than its link's round trip.
//
// The binomial assumes an independent packet lands anywhere in its gap. Two clocks of one
// rate break that: OpenSSH's chaff ticks every 18-22 ms, and two sessions' ticks keep their
// phase for seconds, so on clean paths a whole slot of one lands within delta of the other's
// (2 of 216 independent pairs of real captures alerted, 2026-12-05). What a relay does and a
// second clock does not is copy the inbound gaps, each tick's own irregularity and every
// pause: `gap_rho` correlates the gaps of consecutive outbound packets with the inbound gap
// they straddle (exactly one inbound packet between them, so a pause is paired with a
// pause). Two independent clocks give about 0 whatever their phase.
// `gaps` false leaves the gap statistics out (their ranks cost most of the time).
SteppingStone CorrelatePackets(const std::vector<PacketTime>& inbound,
                               const std::vector<PacketTime>& outbound, absl::Duration delta,
                               absl::Duration offset = absl::ZeroDuration(), bool gaps = true);

// The packet test over windows [offset, offset + width] after each inbound packet: widths
// delta, 2 delta and 4 delta, offsets from 0 in steps of delta / 2 up to the host's leg (at most
// 16 steps). A host behind a Wi-Fi forwards each packet one round trip of its link after the
// sensor saw it come in, spread by the link's jitter (the lab at 3 ms each way with 3 ms of
// jitter: 3-16 ms), where a wired one takes 0.1-0.3 ms. Of the windows with `ratio` at least
// `min_ratio` and `min_correlated` packets, the one whose larger chance (`chance`,
// `gap_chance`) is least wins; both are multiplied by the windows tried (Bonferroni), so
// scanning buys no false match.
struct PacketWindowMatch {
  SteppingStone stone;
  absl::Duration offset;
  absl::Duration width;
};
std::optional<PacketWindowMatch> ScanPacketWindows(const std::vector<PacketTime>& inbound,
                                                   const std::vector<PacketTime>& outbound,
                                                   absl::Duration delta, absl::Duration leg,
                                                   double min_ratio, std::size_t min_correlated);

// P(X >= k) for X ~ Binomial(n, p).
double BinomialTail(std::size_t n, std::size_t k, double p);

// Typing baseline: has a person's output -> next key delay moved later than their own history?
// A person who sees the screen through a far relay sees every output one round trip (screen
// out, keys back) late, so the whole distribution moves by about that round trip while its
// shape, the person's reading and thinking, stays. The shift is estimated on the lower half,
// as the fast reactions hold the network's share best and long pauses (a phone call) vary from
// day to day: a weighted mean of the 5th..50th percentile differences, by Ogawa's best linear
// unbiased weights for a shift (the density read off the pooled delays; timing.cc), so the
// leading edge where reactions crowd weighs most. Its significance is a
// permutation test: how often does a random split of the pooled delays into groups of the
// same sizes shift as far? Seeded, so a replay decides exactly as before; it stops early once
// 20 splits shifted as far (the p-value is then that share, and well above any threshold).
struct ReactionShift {
  double shift_ms = 0;  // recent minus baseline, weighted lower-half quantiles
  double p_value = 1;   // one-sided: a shift at least this large by chance
  double baseline_p10_ms = 0;
  double baseline_p50_ms = 0;
  double recent_p10_ms = 0;
  double recent_p50_ms = 0;
};
// Needs both sets non-empty; `permutations` random splits (0: p_value stays 1).
ReactionShift CompareReactions(const std::vector<double>& baseline,
                               const std::vector<double>& recent, int permutations,
                               std::uint64_t seed);

}  // namespace relaywatch::detectors::relay
