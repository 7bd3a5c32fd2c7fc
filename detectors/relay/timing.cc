#include "detectors/relay/timing.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <random>
#include <span>
#include <utility>

#include "capture/decode/decoded_packet.h"

namespace relaywatch::detectors::relay {
namespace {

// Nearest rank (0-based): the smallest of n sorted values with at least q of them at or
// below it.
std::size_t NearestRank(double q, std::size_t n) {
  auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(n)));
  return std::clamp<std::size_t>(rank, 1, n) - 1;
}

// Appends `ts` to a bounded list of times, or counts it once the list is full.
void KeepOrCount(std::vector<PacketTime>& times, std::size_t max_kept, std::uint32_t& dropped,
                 PacketTime ts) {
  if (times.size() < max_kept) {
    times.push_back(ts);
  } else {
    ++dropped;
  }
}

// How much of [from, to] the windows [t, t + delta] of `times` (in order) cover, each instant
// once: windows overlap when times are closer than delta, and the last may reach past `to`.
absl::Duration Covered(std::span<const PacketTime> times, PacketTime from, PacketTime to,
                       absl::Duration delta) {
  absl::Duration covered = absl::ZeroDuration();
  PacketTime reached = from;
  for (PacketTime t : times) {
    const PacketTime a = std::max(t, reached);
    const PacketTime b = std::min(t + delta, to);
    if (b > a)
      covered += b - a;
    reached = std::max(reached, t + delta);
  }
  return covered;
}

// How likely `hits` of `events` independent of the windows [t, t + delta] of `starts` land in
// one: the binomial tail at the share of [from, to] that the windows cover.
double ChanceOfCover(std::span<const PacketTime> starts, PacketTime from, PacketTime to,
                     absl::Duration delta, std::size_t events, std::size_t hits) {
  const absl::Duration covered = Covered(starts, from, to, delta);
  const double q = to > from ? std::min(1.0, absl::FDivDuration(covered, to - from)) : 1.0;
  return BinomialTail(events, hits, q);
}

// Ranks, ties sharing their mean rank.
std::vector<double> Ranks(const std::vector<double>& v) {
  std::vector<std::size_t> order(v.size());
  for (std::size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::sort(order.begin(), order.end(), [&v](std::size_t a, std::size_t b) { return v[a] < v[b]; });
  std::vector<double> ranks(v.size());
  for (std::size_t i = 0; i < order.size();) {
    std::size_t j = i;
    while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]])
      ++j;
    for (std::size_t k = i; k <= j; ++k)
      ranks[order[k]] = (static_cast<double>(i) + static_cast<double>(j)) / 2.0;
    i = j + 1;
  }
  return ranks;
}

// Spearman's rho: the Pearson correlation of the ranks; 0 where either is constant.
double RankCorrelation(const std::vector<double>& a, const std::vector<double>& b) {
  const std::vector<double> ra = Ranks(a);
  const std::vector<double> rb = Ranks(b);
  const double n = static_cast<double>(ra.size());
  const double mean = (n - 1.0) / 2.0;
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < ra.size(); ++i) {
    sab += (ra[i] - mean) * (rb[i] - mean);
    saa += (ra[i] - mean) * (ra[i] - mean);
    sbb += (rb[i] - mean) * (rb[i] - mean);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : 0.0;
}

}  // namespace

double ToMs(absl::Duration d) {
  return absl::ToDoubleMilliseconds(d);
}

std::optional<double> Median(std::vector<double>& values) {
  if (values.empty())
    return std::nullopt;
  const std::size_t mid = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + mid, values.end());
  if (values.size() % 2 == 1)
    return values[mid];
  const double upper = values[mid];
  const double lower = *std::max_element(values.begin(), values.begin() + mid);
  return (lower + upper) / 2;
}

std::optional<double> Quantile(std::vector<double>& values, double q) {
  if (values.empty())
    return std::nullopt;
  const std::size_t rank = NearestRank(std::clamp(q, 0.0, 1.0), values.size());
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(rank),
                   values.end());
  return values[rank];
}

void HandshakeSplit::OnPacket(PacketTime ts, int direction, std::uint8_t flags, std::uint32_t seq,
                              std::uint32_t ack, std::uint32_t payload_length,
                              std::uint8_t ttl) {
  const bool syn = (flags & decode::kTcpSyn) != 0;
  const bool has_ack = (flags & decode::kTcpAck) != 0;
  if (payload_length > 0) {
    if (first_data_direction_ < 0) {
      first_data_direction_ = direction;
      first_data_ = ts;
      first_data_seq_ = seq;
    } else if (direction == 0 && first_data_direction_ == 0 && seq == first_data_seq_) {
      first_data_again_ = true;  // a resent first write: the copy seen may not be the first
    }
  }
  if (direction == 0 && syn && !has_ack) {
    if (++syns_ == 1) {
      syn_ = ts;
      syn_ttl_ = ttl;
    }
    return;
  }
  if (direction == 1 && syn && has_ack) {
    if (++syn_acks_ == 1) {
      syn_ack_ = ts;
      syn_ack_seq_ = seq;
      syn_ack_ttl_ = ttl;
    }
    return;
  }
  if (direction == 0 && !syn && has_ack && syn_acks_ == 1 && ack_ == absl::InfinitePast() &&
      ack == syn_ack_seq_ + 1) {
    // A late ACK that carries data was held back by the application; it times nothing.
    ack_ = payload_length > 0 && ts - syn_ack_ > kMaxDataAckDelay ? absl::InfiniteFuture() : ts;
  }
}

std::optional<absl::Duration> HandshakeSplit::responder_leg() const {
  if (syns_ != 1 || syn_acks_ < 1 || syn_ack_ < syn_)
    return std::nullopt;
  return syn_ack_ - syn_;
}

std::optional<absl::Duration> HandshakeSplit::connect_wait() const {
  // Data before the SYN/ACK (in the SYN: TCP Fast Open) waited on nothing.
  if (syn_acks_ != 1 || first_data_direction_ != 0 || first_data_again_ || first_data_ < syn_ack_) {
    return std::nullopt;
  }
  return first_data_ - syn_ack_;
}

std::optional<absl::Duration> HandshakeSplit::originator_leg() const {
  if (syn_acks_ != 1 || ack_ == absl::InfinitePast() || ack_ == absl::InfiniteFuture() ||
      ack_ < syn_ack_) {
    return std::nullopt;
  }
  return ack_ - syn_ack_;
}

void StreamQuantile::Add(double x) {
  if (count_ < kExact) {  // kept sorted: exact
    int i = static_cast<int>(count_);
    for (; i > 0 && height_[i - 1] > x; --i)
      height_[i] = height_[i - 1];
    height_[i] = static_cast<float>(x);
    ++count_;
    return;
  }
  if (count_ == kExact) {  // the markers start at their exact ranks among the kept
    float sorted[kExact];
    std::copy(height_, height_ + kExact, sorted);
    for (int m = 0; m < 5; ++m) {
      rank_[m] = static_cast<std::int32_t>(std::lround(IdealRank(m)));
      height_[m] = sorted[rank_[m] - 1];
    }
  }
  ++count_;
  int cell;  // the markers above this cell move up a rank
  if (x < height_[0]) {
    height_[0] = static_cast<float>(x);
    cell = 0;
  } else if (x >= height_[4]) {
    height_[4] = static_cast<float>(x);
    cell = 3;
  } else {
    cell = 0;
    while (x >= height_[cell + 1])
      ++cell;
  }
  for (int i = cell + 1; i < 5; ++i)
    ++rank_[i];
  for (int i = 1; i <= 3; ++i) {
    const double off = IdealRank(i) - rank_[i];
    const int step = off >= 1 && rank_[i + 1] - rank_[i] > 1     ? 1
                     : off <= -1 && rank_[i - 1] - rank_[i] < -1 ? -1
                                                                 : 0;
    if (step == 0)
      continue;
    double h = Parabolic(i, step);
    if (!(height_[i - 1] < h && h < height_[i + 1]))
      h = Linear(i, step);
    height_[i] = static_cast<float>(h);
    rank_[i] += step;
  }
}

double StreamQuantile::IdealRank(int marker) const {
  const double p = p_;
  const double share[5] = {0, p / 2, p, (1 + p) / 2, 1};
  return 1 + (count_ - 1.0) * share[marker];
}

double StreamQuantile::Parabolic(int i, int step) const {
  const double n0 = rank_[i - 1], n1 = rank_[i], n2 = rank_[i + 1];
  const double q0 = height_[i - 1], q1 = height_[i], q2 = height_[i + 1];
  return q1 +
         step / (n2 - n0) *
             ((n1 - n0 + step) * (q2 - q1) / (n2 - n1) + (n2 - n1 - step) * (q1 - q0) / (n1 - n0));
}

double StreamQuantile::Linear(int i, int step) const {
  return height_[i] + step * (height_[i + step] - height_[i]) / (rank_[i + step] - rank_[i]);
}

std::optional<double> StreamQuantile::value() const {
  if (count_ == 0)
    return std::nullopt;
  if (count_ <= kExact) {  // nearest rank among the kept samples
    const auto rank = static_cast<std::uint32_t>(std::ceil(p_ * count_));
    return height_[rank == 0 ? 0 : rank - 1];
  }
  return height_[2];
}

SegmentArrival AckRtt::OnData(PacketTime ts, std::uint32_t seq, std::uint32_t length) {
  if (length == 0)
    return SegmentArrival::kNew;
  if (!window_)
    window_ = std::make_unique<Window>();
  const std::uint32_t end = seq + length;
  if (have_high_ && SeqLess(seq, high_)) {
    // Bytes never seen, behind later ones: the first pass of a reordered segment (or of one
    // lost before the sensor), not sampled (its ACK is for the later ones too).
    const bool fill = SeqLessEq(end, high_) && FillHole(seq, end);
    // Either way the segments after it were acknowledged only once it came: their ACKs
    // waited on it, and on a retransmission every one it overlaps is ambiguous.
    for (int i = 0; i < count_; ++i) {
      Segment& s = window_->outstanding[(head_ + i) % kOutstanding];
      if (SeqLess(seq, s.end))
        s.retransmitted = true;
    }
    if (fill) {
      ++out_of_order_;
      return SegmentArrival::kFill;
    }
    ++retransmissions_;  // sent before, in part at least
    if (SeqLessEq(end, high_))
      return SegmentArrival::kRepeat;
  } else if (have_high_ && SeqLess(high_, seq)) {
    AddHole(high_, seq);  // bytes skipped: reordered behind this, or lost before the sensor
  }
  const bool overlaps = have_high_ && SeqLess(seq, high_);
  if (count_ == kOutstanding) {  // the oldest is forgotten: it can no longer be sampled
    head_ = (head_ + 1) % kOutstanding;
    --count_;
  }
  window_->outstanding[(head_ + count_) % kOutstanding] = {end, ts, overlaps};
  ++count_;
  high_ = end;
  have_high_ = true;
  return overlaps ? SegmentArrival::kRepeat : SegmentArrival::kNew;
}

bool AckRtt::FillHole(std::uint32_t seq, std::uint32_t end) {
  for (int i = 0; i < holes_; ++i) {
    Hole& h = window_->holes[i];
    if (SeqLess(seq, h.begin) || SeqLess(h.end, end))
      continue;
    if (seq == h.begin && end == h.end) {
      EraseHole(i);
    } else if (seq == h.begin) {
      h.begin = end;
    } else if (end == h.end) {
      h.end = seq;
    } else {  // the middle: two holes, the newer half at the end
      const Hole tail = {end, h.end};
      h.end = seq;
      AddHole(tail.begin, tail.end);
    }
    return true;
  }
  return false;
}

void AckRtt::AddHole(std::uint32_t begin, std::uint32_t end) {
  if (holes_ == kHoles)  // the oldest is forgotten: a late piece of it reads as a repeat
    EraseHole(0);
  window_->holes[holes_++] = {begin, end};
}

void AckRtt::EraseHole(int i) {  // the holes after it move up, keeping their age order
  for (int j = i + 1; j < holes_; ++j)
    window_->holes[j - 1] = window_->holes[j];
  --holes_;
}

void AckRtt::OnAck(PacketTime ts, std::uint32_t ack) {
  // A hole the receiver acknowledged was the sensor's loss, not the path's: a later copy of
  // those bytes is a retransmission.
  int kept = 0;
  for (int i = 0; i < holes_; ++i) {
    if (!SeqLessEq(window_->holes[i].end, ack))
      window_->holes[kept++] = window_->holes[i];
  }
  holes_ = kept;
  while (count_ > 0) {
    const Segment& s = window_->outstanding[head_];
    if (!SeqLessEq(s.end, ack))
      break;
    if (s.end == ack && !s.retransmitted && ts >= s.sent)
      rtt_.Add(ts - s.sent);
    head_ = (head_ + 1) % kOutstanding;
    --count_;
  }
}

void RttSamples::Add(absl::Duration sample) {
  int i = static_cast<int>(std::min<std::uint32_t>(count_, kLowest));
  if (i < kLowest || sample < lowest_[kLowest - 1]) {
    if (i == kLowest)
      --i;
    for (; i > 0 && lowest_[i - 1] > sample; --i)
      lowest_[i] = lowest_[i - 1];
    lowest_[i] = sample;
  }
  low_.Add(ToMs(sample));
  srtt_ = count_ == 0 ? sample : srtt_ + (sample - srtt_) / 8;
  ++count_;
}

std::optional<absl::Duration> RttSamples::floor() const {
  if (count_ == 0)
    return std::nullopt;
  return lowest_[std::min<std::uint32_t>(count_ / 20, kLowest - 1)];
}

std::optional<absl::Duration> RttSamples::low_quantile() const {
  if (count_ < quantile_after_)
    return std::nullopt;
  return absl::Microseconds(std::llround(*low_.value() * 1000));
}

std::optional<absl::Duration> RttSamples::smoothed() const {
  if (count_ == 0)
    return std::nullopt;
  return srtt_;
}

void Turnarounds::OnServerData(std::optional<std::uint32_t> ack) {
  if (!unsettled_)
    return;
  unsettled_ = false;
  // Not past the answer's first byte: sent before the answer reached the server.
  if (ack && SeqLessEq(*ack, answer_seq_)) {
    samples_.pop_back();
    waits_from_.pop_back();
    spreads_.pop_back();
    ++interrupted_;
    first_kept_ = first_kept_ && !samples_.empty();
  }
}

void Turnarounds::OnUnawaitedClientData() {
  if (!flight_open_)
    return;  // more of the client's own flight, as it was sent
  flight_open_ = false;
  if (!full())
    ++interrupted_;
}

bool IpIdGaps::OnPacket(std::uint16_t id, std::uint32_t payload_length) {
  if (id == 0 && !(seen_ && last_ == 0xffff))
    return false;  // no counter; but a counter passes through 0 after 65535
  const auto step = static_cast<std::uint16_t>(id - last_);
  const bool first = !seen_;
  const bool after_merged = merged_;
  seen_ = true;
  last_ = id;
  merged_ = payload_length > kMaxWireSegment;
  if (first || after_merged || step == 0)
    return false;  // nothing to compare, a step over merged segments, or a duplicate
  if (step == 1) {
    ones_ = std::min(ones_ + 1, 1u << 30);
    return false;
  }
  const bool counter = ones_ >= kMinSteps && ones_ >= 3 * others_;
  others_ = std::min(others_ + 1, 1u << 28);
  // Forward by more than one: numbers skipped. Backward (the top half): reordered, or
  // another counter; neither is loss seen here.
  return counter && step < 0x8000;
}

void Turnarounds::OnData(PacketTime ts, bool from_client, bool retransmission, std::uint32_t seq,
                         std::optional<std::uint32_t> ack) {
  if (!from_client) {
    OnServerData(ack);
    if (!flight_open_) {
      flight_open_ = true;
      flight_tainted_ = false;
      flight_first_ = ts;
    }
    flight_last_ = ts;
    flight_tainted_ = flight_tainted_ || retransmission;
    return;
  }
  if (!flight_open_)
    return;  // more of the client's own flight: it answers nothing new
  flight_open_ = false;
  if (full())
    return;
  const absl::Duration gap = ts - flight_last_;
  // Loss first: a retransmission's wait (an RTO) is not a person's.
  if (retransmission || flight_tainted_ || gap < absl::ZeroDuration()) {
    ++refused_;
    return;
  }
  if (gap > max_gap_) {
    ++refused_;
    ++slow_;
    return;
  }
  first_kept_ = first_kept_ || answers() == 0;
  samples_.push_back(ToMs(gap));
  waits_from_.push_back(flight_last_);
  spreads_.push_back(ToMs(flight_last_ - flight_first_));
  unsettled_ = true;
  answer_seq_ = seq;
}

void Exchanges::OnOpen(PacketTime ts) {
  if (opened_ == absl::InfinitePast())
    opened_ = ts;
}

bool Exchanges::OnData(PacketTime ts, bool from_originator) {
  if (full_)
    return false;
  if (from_originator) {
    if (!exchanges_.empty() && exchanges_.back().answered == absl::InfinitePast())
      return false;  // more of the same request
    if (!exchanges_.empty())
      exchanges_.back().next_request = ts;
    if (exchanges_.size() >= max_) {
      full_ = true;
      return false;
    }
    // A connection's first request starts at its SYN: opening it is part of the fetch.
    exchanges_.push_back({exchanges_.empty() && opened_ != absl::InfinitePast() ? opened_ : ts,
                          absl::InfinitePast()});
    return false;
  }
  if (exchanges_.empty()) {
    // The responder speaks first: it answers the connection's opening.
    if (opened_ == absl::InfinitePast())
      return false;
    exchanges_.push_back({opened_, absl::InfinitePast()});
  }
  exchanges_.back().answered = ts;
  return true;
}

bool FedWait(const Exchange& fetch, PacketTime from, double wait_ms, double slack_ms) {
  const PacketTime answer = from + absl::Microseconds(std::llround(wait_ms * 1000.0));
  return fetch.start >= from && fetch.start <= answer && fetch.answered >= fetch.start &&
         fetch.answered <= answer && ToMs(answer - fetch.answered) <= slack_ms &&
         fetch.next_request > answer;
}

double TurnaroundMs(std::vector<double> samples_ms, std::optional<double> handshake_ms) {
  const std::optional<double> quartile = Quantile(samples_ms, 0.25);
  if (!quartile || !handshake_ms)
    return quartile.value_or(handshake_ms.value_or(0.0));
  return std::min(*quartile, *handshake_ms);
}

double SpreadFlightBoundMs(double turnaround_ms, double spread_ms, double client_leg_ms) {
  // The relay sent the first part at once and held only what came after; the held tail
  // leaves when the far client acknowledges what went before, less than a hidden round
  // trip later. A flight shorter than the hidden leg: the tail waited for the first part's
  // acknowledgement, leg + (leg - spread) in all. A longer one (the relay released earlier
  // tails while the flight came in): up to a whole leg more than the leg itself.
  // A reading within the client's own leg has no hidden leg to bound: it stays as read, so a
  // bound never exceeds what was measured.
  if (turnaround_ms <= client_leg_ms)
    return turnaround_ms;
  const double waited = turnaround_ms - client_leg_ms;
  const double leg = spread_ms <= waited / 2 ? (waited + spread_ms) / 2 : waited / 2;
  return client_leg_ms + leg;
}

FlowTurnaround ReadTurnaround(const std::vector<double>& samples_ms,
                              const std::vector<double>& spreads_ms,
                              std::optional<double> handshake_ms, double client_leg_ms,
                              std::optional<double> connect_wait_ms, bool early_answers) {
  const double measured = TurnaroundMs(samples_ms, handshake_ms);
  if (samples_ms.empty() || spreads_ms.size() != samples_ms.size())
    return {measured, false};
  // A turnaround after a spread flight is a held one or not: never shorter than the leg.
  // Those after whole flights read it as it is and decide, with the others as a ceiling.
  std::vector<double> whole;
  std::vector<double> ceilings;  // early_answers: each sample, a spread one with its spread
  for (std::size_t i = 0; i < samples_ms.size(); ++i) {
    const bool spread = spreads_ms[i] > kWholeFlightSpreadMs;
    if (!spread)
      whole.push_back(samples_ms[i]);
    if (early_answers)  // a spread one may answer the first part: short by the spread
      ceilings.push_back(samples_ms[i] + (spread ? spreads_ms[i] : 0.0));
  }
  if (!whole.empty()) {
    const double ceiling =
        early_answers ? TurnaroundMs(std::move(ceilings), handshake_ms) : measured;
    return {std::min(ceiling, *Quantile(whole, 0.25)), false};
  }
  std::vector<double> bounds;
  for (std::size_t i = 0; i < samples_ms.size(); ++i)
    bounds.push_back(SpreadFlightBoundMs(samples_ms[i], spreads_ms[i], client_leg_ms));
  std::optional<double> handshake;
  if (handshake_ms)
    handshake = SpreadFlightBoundMs(*handshake_ms, spreads_ms[0], client_leg_ms);
  const double bound = TurnaroundMs(std::move(bounds), handshake);
  if (connect_wait_ms) {
    const double leg = *connect_wait_ms - client_leg_ms;
    const double read_leg = measured - client_leg_ms;
    if (leg >= (bound - client_leg_ms) / 2 && leg <= read_leg * 1.25 && read_leg > 0)
      return {.ms = std::min(*connect_wait_ms, measured), .by_connect_wait = true};
  }
  return {.ms = bound, .lower_bound = true};
}

double HiddenLegMs(double turnaround_ms, double client_leg_ms) {
  return std::max(0.0, turnaround_ms - client_leg_ms);
}

double FibreKm(double rtt_ms) {
  return std::max(0.0, rtt_ms) * kFibreKmPerRttMs;
}

void SegmentSizes::Add(PacketTime ts, std::uint32_t length) {
  ++segments_;
  if (last_ != absl::InfinitePast() && ts - last_ < KeystrokeTiming::kPause)
    busy_ms_ += ToMs(ts - last_);
  last_ = ts;
  auto it = count_.find(length);
  if (it != count_.end()) {
    ++it->second;
  } else if (count_.size() < kMaxSizes) {
    count_.emplace(length, 1);
  }
}

bool SegmentSizes::LooksCoalescedChaff(double interval_ms) const {
  constexpr std::uint32_t kMinPackets = 30;
  if (busy_ms_ <= 0 || interval_ms <= 0)  // fewer than two segments have no busy time
    return false;
  std::uint32_t commonest = 0;
  std::uint32_t most = 0;
  for (const auto& [size, n] : count_) {
    if (n > most) {
      most = n;
      commonest = size;
    }
  }
  // Packet sizes that 80 % of the segments are whole multiples of: a segment of k packets of
  // 36 bytes is 36 k; of unequal packets it rarely is. Segments of one size have several
  // (144 bytes are 4 of 36 or 2 of 72), so each is tried.
  for (std::uint32_t k = 1; k <= kMaxPacketsPerSegment; ++k) {
    if (commonest % k != 0)
      continue;
    const std::uint32_t unit = commonest / k;
    if (unit < kMinPacketBytes)
      return false;
    if (unit > KeystrokeTiming::kMaxKeyBytes)  // chaff packets are key-sized
      continue;
    std::uint32_t multiples = 0;
    std::uint32_t packets = 0;
    for (const auto& [size, n] : count_) {
      if (size % unit == 0 && size / unit <= kMaxPacketsPerSegment) {
        multiples += n;
        packets += n * (size / unit);
      }
    }
    if (multiples * 10 < segments_ * 8)
      continue;
    const double per_tick = packets * interval_ms / busy_ms_;
    if (packets >= kMinPackets && per_tick >= 0.75 && per_tick <= 1.25)
      return true;
  }
  return false;
}

void KeystrokeTiming::OnClientData(PacketTime ts, std::uint32_t length, bool late) {
  if (length == 0)
    return;
  segments_.Add(ts, length);
  key_last_ = key_last_timed_ = reaction_last_ = false;
  if (length > kMaxKeyBytes) {  // a paste, a file or a tunnel's payload: not a key
    echo_pending_ = false;
    output_pending_ = false;
    return;
  }
  if (output_pending_) {
    // Faster than a person can react to what the screen shows: the client software's own
    // answer (an SSH window adjustment), not a key.
    constexpr absl::Duration kHumanReactionFloor = absl::Milliseconds(100);
    if (!late && ts - last_output_ >= kHumanReactionFloor + software_answer_ &&
        output_to_input_ms_.size() < kMaxKeys) {
      output_to_input_ms_.push_back(ToMs(ts - last_output_));
      reaction_last_ = true;
    }
    output_pending_ = false;
  }
  key_last_ = true;
  echo_pending_ = true;
  last_key_ = ts;
  last_key_size_ = length;
  if (origin_ == absl::InfinitePast())
    origin_ = ts;
  // The rhythm statistics need the session's first keys only; reactions go on (above).
  if (key_ms_.size() >= kMaxKeys)
    return;
  key_ms_.push_back(ToMs(ts - origin_));
  key_size_.push_back(length);
  key_last_timed_ = true;
}

void KeystrokeTiming::OnClientFin(PacketTime ts) {
  // The goodbye and the FIN leave the client together (the lab's: 0.1-3 ms apart, also
  // from a far client behind a jump host); a person's last key is answered by the server.
  constexpr absl::Duration kGoodbye = absl::Seconds(1);
  if (!key_last_ || ts - last_key_ > kGoodbye)
    return;
  if (reaction_last_)
    output_to_input_ms_.pop_back();
  if (key_last_timed_) {
    key_ms_.pop_back();
    key_size_.pop_back();
  }
  echo_pending_ = false;
  key_last_ = key_last_timed_ = reaction_last_ = false;
}

std::vector<double> KeystrokeTiming::TakeOutputToInput() {
  std::vector<double> taken;
  taken.swap(output_to_input_ms_);
  reaction_last_ = false;  // taken: it is judged already
  return taken;
}

void KeystrokeTiming::OnServerData(PacketTime ts, std::uint32_t length) {
  if (length == 0 || origin_ == absl::InfinitePast())
    return;
  key_last_ = key_last_timed_ = reaction_last_ = false;
  if (echo_pending_) {
    if (echo_ms_.size() < kMaxKeys)
      echo_ms_.push_back(ToMs(ts - last_key_));
    echo_pending_ = false;
  }
  // An echo is about the size of the key that caused it; output (a command's result, a new
  // prompt) is larger, and a person reads it before typing on.
  constexpr std::uint32_t kOutputExcess = 16;
  if (length >= last_key_size_ + kOutputExcess) {
    last_output_ = ts;
    output_pending_ = true;
  }
}

bool PredatesKeystrokeObfuscation(std::string_view software) {
  constexpr std::string_view kOpenSsh = "OpenSSH_";
  if (!software.starts_with(kOpenSsh))
    return false;
  // The release is the last "_"-separated part: "9.2p1", or "8.1" after "for_Windows_".
  const std::string_view release = software.substr(software.rfind('_') + 1);
  int major = 0;
  int minor = 0;
  std::size_t i = 0;
  auto number = [&](int& out) {
    const std::size_t start = i;
    while (i < release.size() && i - start < 3 && release[i] >= '0' && release[i] <= '9')
      out = out * 10 + (release[i++] - '0');
    return i > start;
  };
  if (!number(major) || i >= release.size() || release[i++] != '.' || !number(minor))
    return false;  // not a release we can read: it may have the feature
  return major < 9 || (major == 9 && minor < 5);
}

bool LooksObfuscated(const std::vector<double>& key_ms, const std::vector<std::uint32_t>& sizes,
                     double interval_ms) {
  constexpr std::size_t kMinKeys = 30;
  if (key_ms.size() < kMinKeys || sizes.size() != key_ms.size() || interval_ms <= 0) {
    return false;
  }
  std::map<std::uint32_t, std::size_t> by_size;
  for (std::uint32_t s : sizes)
    ++by_size[s];
  std::size_t most = 0;
  for (const auto& [size, n] : by_size)
    most = std::max(most, n);
  if (most * 10 < sizes.size() * 8)
    return false;
  // Within 15% of a tick: typing that ignores the grid lands there 30% of the time.
  const double tolerance = 0.15 * interval_ms;
  std::vector<double> gaps;
  std::size_t on_grid = 0;
  for (std::size_t i = 1; i < key_ms.size(); ++i) {
    const double gap = key_ms[i] - key_ms[i - 1];
    if (gap >= ToMs(KeystrokeTiming::kPause))
      continue;
    gaps.push_back(gap);
    const double ticks = std::round(gap / interval_ms);
    if (ticks >= 1 && std::abs(gap - ticks * interval_ms) <= tolerance)
      ++on_grid;
  }
  if (gaps.size() < kMinKeys - 1)
    return false;
  if (on_grid * 10 >= gaps.size() * 8)
    return true;
  // Chaff fills every tick, so the packets run at the clock's rate: no person types 50 keys
  // a second. Jitter on a relayed path moves single gaps off the grid, not their median.
  const double median = *Median(gaps);
  return median >= 0.75 * interval_ms && median <= 1.25 * interval_ms;
}

KeystrokeSummary KeystrokeTiming::Summarise() const {
  KeystrokeSummary s;
  s.keys = static_cast<std::uint32_t>(key_ms_.size());
  s.obfuscated =
      may_obfuscate_ && (LooksObfuscated(key_ms_, key_size_) || segments_.LooksCoalescedChaff());
  std::vector<double> echo = echo_ms_;
  s.echo_ms = Median(echo);
  if (s.obfuscated)
    return s;  // paced keys carry no typing rhythm; chaff is not input
  std::vector<double> gaps;
  for (std::size_t i = 1; i < key_ms_.size(); ++i) {
    const double gap = key_ms_[i] - key_ms_[i - 1];
    if (gap < ToMs(kPause))
      gaps.push_back(gap);
  }
  constexpr std::size_t kMinGaps = 10;
  if (gaps.size() >= kMinGaps) {
    double sum = 0;
    std::size_t clumped = 0;
    for (double g : gaps) {
      sum += g;
      if (g < 15.0)
        ++clumped;
    }
    const double mean = sum / static_cast<double>(gaps.size());
    double var = 0;
    for (double g : gaps)
      var += (g - mean) * (g - mean);
    var /= static_cast<double>(gaps.size());
    s.clumped_fraction = static_cast<double>(clumped) / static_cast<double>(gaps.size());
    s.gap_cv = mean > 0 ? std::sqrt(var) / mean : 0.0;
    s.gap_median_ms = Median(gaps);
  }
  constexpr std::size_t kMinOutputs = 5;
  if (output_to_input_ms_.size() >= kMinOutputs) {
    std::vector<double> v = output_to_input_ms_;
    s.output_to_input_p10_ms = Quantile(v, 0.10);
  }
  return s;
}

void OnTimes::OnData(PacketTime ts) {
  const bool on = last_ == absl::InfinitePast() || ts - last_ >= idle_;
  last_ = std::max(last_, ts);
  if (!on)
    return;
  KeepOrCount(times_, max_kept_, dropped_, ts);
}

SteppingStone CorrelateOnTimes(const std::vector<PacketTime>& inbound,
                               const std::vector<PacketTime>& outbound, absl::Duration delta) {
  SteppingStone r;
  r.inbound_ons = inbound.size();
  r.outbound_ons = outbound.size();
  std::vector<double> lags;
  std::size_t i = 0;
  for (PacketTime out : outbound) {
    // The latest inbound ON at or before this outbound ON.
    while (i + 1 < inbound.size() && inbound[i + 1] <= out)
      ++i;
    if (inbound.empty() || inbound[i] > out)
      continue;
    const absl::Duration lag = out - inbound[i];
    if (lag <= delta) {
      ++r.correlated;
      lags.push_back(ToMs(lag));
    }
  }
  const std::size_t least = std::min(r.inbound_ons, r.outbound_ons);
  r.ratio = least == 0 ? 0.0 : static_cast<double>(r.correlated) / static_cast<double>(least);
  r.median_lag_ms = Median(lags).value_or(0.0);
  if (inbound.empty() || outbound.empty())
    return r;
  const PacketTime begin = std::min(inbound.front(), outbound.front());
  const PacketTime end = std::max(inbound.back(), outbound.back());
  r.chance = ChanceOfCover(inbound, begin, end, delta, r.outbound_ons, r.correlated);
  return r;
}

SteppingStone CorrelateShownOutput(const std::vector<PacketTime>& leads,
                                   const std::vector<PacketTime>& updates, absl::Duration delta) {
  SteppingStone r;
  r.inbound_ons = updates.size();
  r.outbound_ons = leads.size();
  if (leads.empty() || updates.empty())
    return r;
  std::vector<double> lags;
  for (PacketTime lead : leads) {
    // The first update at or after this output.
    const auto next = std::lower_bound(updates.begin(), updates.end(), lead);
    if (next != updates.end() && *next - lead <= delta) {
      ++r.correlated;
      lags.push_back(ToMs(*next - lead));
    }
  }
  r.ratio = static_cast<double>(r.correlated) / static_cast<double>(leads.size());
  r.median_lag_ms = Median(lags).value_or(0.0);
  // Windows [update - delta, update] over [begin, end] cover as much as [update, + delta]
  // over the span moved by delta.
  const PacketTime begin = std::min(leads.front(), updates.front() - delta);
  const PacketTime end = std::max(leads.back(), updates.back());
  r.chance =
      ChanceOfCover(updates, begin + delta, end + delta, delta, r.outbound_ons, r.correlated);
  return r;
}

void PacketSample::OnData(PacketTime ts) {
  const std::int64_t slot = SlotOf(ts);
  if (slot != slot_) {
    slot_ = slot;
    in_slot_ = 0;
  }
  if (in_slot_ >= per_slot_)
    return;
  ++in_slot_;
  KeepOrCount(times_, max_kept_, dropped_, ts);
}

SteppingStone CorrelatePackets(const std::vector<PacketTime>& inbound,
                               const std::vector<PacketTime>& outbound, absl::Duration delta,
                               absl::Duration offset, bool gaps) {
  SteppingStone r;
  std::vector<double> lags;
  std::vector<double> gaps_in;
  std::vector<double> gaps_out;
  double expected = 0;  // coincidences that independent packets would give, summed
  // Both are in time order (one direction of one flow each); walk them slot by slot.
  std::size_t i = 0;
  std::size_t o = 0;
  while (i < inbound.size() && o < outbound.size()) {
    const std::int64_t si = PacketSample::SlotOf(inbound[i]);
    const std::int64_t so = PacketSample::SlotOf(outbound[o]);
    if (si != so) {
      // A slot only one side sampled says nothing.
      if (si < so) {
        while (i < inbound.size() && PacketSample::SlotOf(inbound[i]) == si)
          ++i;
      } else {
        while (o < outbound.size() && PacketSample::SlotOf(outbound[o]) == so)
          ++o;
      }
      continue;
    }
    std::size_t i_end = i;
    while (i_end < inbound.size() && PacketSample::SlotOf(inbound[i_end]) == si)
      ++i_end;
    std::size_t o_end = o;
    while (o_end < outbound.size() && PacketSample::SlotOf(outbound[o_end]) == so)
      ++o_end;
    // The stretch both samples cover in this slot: outbound packets between two sampled
    // inbound ones.
    const PacketTime from = std::max(inbound[i], outbound[o] - offset);
    const PacketTime to = inbound[i_end - 1];
    for (std::size_t k = i; k < i_end; ++k) {
      if (inbound[k] >= from - delta)
        ++r.inbound_ons;
    }
    std::size_t last_in = i;  // the latest inbound packet at or before the outbound one
    std::optional<std::pair<PacketTime, std::size_t>> previous;  // outbound time, its last_in
    for (std::size_t k = o; k < o_end; ++k) {
      // Matched as if sent `offset` earlier: an inbound packet within [offset, offset + delta]
      // before it.
      const PacketTime t = outbound[k] - offset;
      if (t < from || t >= to)
        continue;
      while (last_in + 1 < i_end && inbound[last_in + 1] <= t)
        ++last_in;
      // inbound[last_in] <= t < inbound[last_in + 1], which exists as t < to, in any order.
      ++r.outbound_ons;
      if (gaps && previous && previous->second + 1 == last_in) {
        gaps_in.push_back(ToMs(inbound[last_in] - inbound[previous->second]));
        gaps_out.push_back(ToMs(t - previous->first));
      }
      previous.emplace(t, last_in);
      // By coincidence a packet lands within delta after the last inbound one as often as
      // delta fills the gap it lies in: the local rate, so two sessions typed at the same
      // time (dense together, sparse together) do not match beyond chance.
      const absl::Duration gap = inbound[last_in + 1] - inbound[last_in];
      expected += gap > delta ? absl::FDivDuration(delta, gap) : 1.0;
      const absl::Duration lag = t - inbound[last_in];
      if (lag <= delta) {
        ++r.correlated;
        lags.push_back(ToMs(lag + offset));
      }
    }
    i = i_end;
    o = o_end;
  }
  if (r.outbound_ons == 0)
    return r;
  const double n = static_cast<double>(r.outbound_ons);
  r.ratio = static_cast<double>(r.correlated) / n;
  r.median_lag_ms = Median(lags).value_or(0.0);
  // Each packet's chance differs; the binomial at their mean has the same mean and a wider
  // tail than their sum's, so it errs toward no stepping stone.
  r.chance = BinomialTail(r.outbound_ons, r.correlated, std::min(1.0, expected / n));
  r.gap_pairs = gaps_in.size();
  if (r.gap_pairs >= 3) {
    r.gap_rho = RankCorrelation(gaps_in, gaps_out);
    // Under independence rho * sqrt(n - 1) is about standard normal.
    const double z = r.gap_rho * std::sqrt(static_cast<double>(r.gap_pairs) - 1.0);
    r.gap_chance = 0.5 * std::erfc(z / std::sqrt(2.0));
  }
  return r;
}

std::optional<PacketWindowMatch> ScanPacketWindows(const std::vector<PacketTime>& inbound,
                                                   const std::vector<PacketTime>& outbound,
                                                   absl::Duration delta, absl::Duration leg,
                                                   double min_ratio, std::size_t min_correlated) {
  if (delta <= absl::ZeroDuration())
    return std::nullopt;
  constexpr int kMaxOffsets = 17;  // 0 and 16 steps
  const absl::Duration step = delta / 2;
  std::vector<absl::Duration> offsets;
  for (absl::Duration a = absl::ZeroDuration(); a <= leg && offsets.size() < kMaxOffsets;
       a += step) {
    offsets.push_back(a);
  }
  const std::vector<absl::Duration> widths = {delta, 2 * delta, 4 * delta};
  const double tries = static_cast<double>(offsets.size() * widths.size());
  const auto weaker = [](const SteppingStone& x) {
    return std::max(x.chance, x.gap_chance);
  };
  std::optional<PacketWindowMatch> best;
  for (absl::Duration offset : offsets) {
    // The gaps' pairing depends on the offset alone: ranked once, where a width matched.
    std::optional<SteppingStone> gaps;
    for (absl::Duration width : widths) {
      SteppingStone s = CorrelatePackets(inbound, outbound, width, offset, /*gaps=*/false);
      if (s.ratio < min_ratio || s.correlated < min_correlated)
        continue;
      if (!gaps)
        gaps = CorrelatePackets(inbound, outbound, width, offset);
      s.gap_pairs = gaps->gap_pairs;
      s.gap_rho = gaps->gap_rho;
      s.gap_chance = gaps->gap_chance;
      s.chance = std::min(1.0, s.chance * tries);
      s.gap_chance = std::min(1.0, s.gap_chance * tries);
      if (!best || weaker(s) < weaker(best->stone))
        best = PacketWindowMatch{s, offset, width};
    }
  }
  return best;
}

double BinomialTail(std::size_t n, std::size_t k, double p) {
  if (k == 0 || p >= 1)
    return 1;
  if (k > n || p <= 0)
    return 0;
  // Summed in logs: n is at most a few hundred ON periods.
  const double log_p = std::log(p);
  const double log_q = std::log1p(-p);
  const double log_n = std::lgamma(static_cast<double>(n) + 1);
  double tail = 0;
  for (std::size_t i = k; i <= n; ++i) {
    const double x = static_cast<double>(i);
    tail += std::exp(log_n - std::lgamma(x + 1) - std::lgamma(static_cast<double>(n) - x + 1) +
                     x * log_p + (static_cast<double>(n) - x) * log_q);
  }
  return std::min(1.0, tail);
}

namespace {

// The shift is a weighted mean of the 5th..50th percentile differences: the lower half, as
// long pauses (a phone call, a day of reading long logs) vary from day to day while the fast
// reactions hold the network's share. The weights are Ogawa's (1951) asymptotically best
// linear unbiased estimate of a location shift from these sample quantiles: with f_i the
// density at the i-th used quantile u_i (f = 0 at u = 0 and 1), quantile i weighs
// f_i ((f_i - f_i-1) / (u_i - u_i-1) - (f_i+1 - f_i) / (u_i+1 - u_i)). Unlike weighing each
// quantile by its own precision, this accounts for neighbouring quantiles moving together:
// where the density falls as an exponential tail does, linearly in u, a quantile adds
// nothing its neighbours did not, and the weight goes where the density bends, the leading
// edge where reactions crowd, whatever the person's shape. The density is read off the
// pooled delays, which a permutation leaves unchanged, so the test stays exact.
// tests/lab/shift_estimators.py measures it against the alternatives and the best possible.
constexpr std::size_t kQuantiles = 10;  // 0.05, 0.10, ..., 0.50
// Half width, in probability, of the span over which the density at a quantile is read, and
// the fewest pooled delays on each side of it: fewer make the weights noisy.
constexpr double kDensitySpan = 0.04;
constexpr double kDensityDelays = 10;
// Delays are microsecond timestamps apart; a span below this is ties, not infinite density.
constexpr double kMinSpanMs = 1.0;
// A quantile counts only where the smaller group has this many delays at or below it: the
// weights' asymptotics hold for many delays, not for the 2nd of 30.
constexpr double kMinBelow = 5;

// As (i + 1) / 20 rather than 0.05 * (i + 1), so that ceil(q n) has no rounding excess.
constexpr double GridQuantile(std::size_t i) {
  return static_cast<double>(i + 1) / 20.0;
}

// Nearest-rank positions (0-based) of the grid's quantiles in a sorted group of n values.
std::array<std::size_t, kQuantiles> QuantileRanks(std::size_t n) {
  std::array<std::size_t, kQuantiles> ranks{};
  for (std::size_t i = 0; i < kQuantiles; ++i)
    ranks[i] = NearestRank(GridQuantile(i), n);
  return ranks;
}

// The pooled delays in ascending order, each labelled with its group (0 baseline, 1 recent).
// One pass up the order finds both groups' quantiles, so a split costs no sort: the k-th
// smallest of a group is where the group's count reaches k, whatever the order among ties.
class PooledSplit {
 public:
  PooledSplit(const std::vector<double>& baseline, const std::vector<double>& recent)
      : ranks_{QuantileRanks(baseline.size()), QuantileRanks(recent.size())} {
    std::vector<std::pair<double, std::uint8_t>> pooled;
    pooled.reserve(baseline.size() + recent.size());
    for (double d : baseline)
      pooled.emplace_back(d, 0);
    for (double d : recent)
      pooled.emplace_back(d, 1);
    std::sort(pooled.begin(), pooled.end());
    for (const auto& [value, group] : pooled) {
      values_.push_back(value);
      labels_.push_back(group);
    }
    const std::size_t n = values_.size();
    const auto smaller = static_cast<double>(std::min(baseline.size(), recent.size()));
    const double h = std::max(kDensitySpan, kDensityDelays / static_cast<double>(n));
    // The used quantiles, between u = 0 and u = 1 where the density is taken as 0; f in
    // units of 1 / (2 h ms), a common factor the normalisation removes.
    std::array<std::size_t, kQuantiles + 2> index{};
    std::array<double, kQuantiles + 2> u{};
    std::array<double, kQuantiles + 2> f{};
    std::size_t used = 1;
    for (std::size_t i = 0; i < kQuantiles; ++i) {
      const double q = GridQuantile(i);
      if (q * smaller < kMinBelow && i + 1 < kQuantiles)
        continue;  // the median always counts
      const double span =
          std::max(kMinSpanMs, values_[NearestRank(q + h, n)] - values_[NearestRank(q - h, n)]);
      index[used] = i;
      u[used] = q;
      f[used] = 1.0 / span;
      ++used;
    }
    u[used] = 1.0;
    const auto slope = [&](std::size_t j) {
      return (f[j] - f[j - 1]) / (u[j] - u[j - 1]);
    };
    // The weights sum to sum_j (f_j - f_j-1)^2 / (u_j - u_j-1) > 0: the estimate's
    // information, by which they are divided so that a pure shift is returned exactly.
    double total = 0;
    for (std::size_t j = 1; j < used; ++j) {
      weights_[index[j]] = f[j] * (slope(j) - slope(j + 1));
      total += weights_[index[j]];
    }
    for (double& w : weights_)
      w /= total;
  }

  // Recent minus baseline, the weighted mean of the quantile differences. With `rng`, the
  // labels are first dealt out afresh (a forward Fisher-Yates done lazily: the scan stops at
  // both medians, about half way, and only the positions it reads need drawing).
  double Shift(std::mt19937_64* rng) {
    std::array<std::size_t, 2> seen{};
    std::array<std::size_t, 2> next{};
    std::array<double, 2> sum{};
    const std::size_t n = labels_.size();
    std::uint64_t bits = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (rng != nullptr) {
        // By hand, as std::shuffle's draws differ between standard libraries; each 64-bit
        // draw serves two positions, scaled by a multiply (Lemire) rather than a division.
        if (i % 2 == 0)
          bits = (*rng)();
        const auto r = static_cast<std::uint32_t>(i % 2 == 0 ? bits : bits >> 32);
        const auto j = static_cast<std::size_t>((static_cast<std::uint64_t>(r) * (n - i)) >> 32);
        std::swap(labels_[i], labels_[i + j]);
      }
      const std::uint8_t g = labels_[i];
      while (next[g] < kQuantiles && ranks_[g][next[g]] == seen[g]) {
        sum[g] += weights_[next[g]] * values_[i];
        ++next[g];
      }
      ++seen[g];
      if (next[0] == kQuantiles && next[1] == kQuantiles)
        break;
    }
    return sum[1] - sum[0];
  }

 private:
  std::array<std::array<std::size_t, kQuantiles>, 2> ranks_;
  std::array<double, kQuantiles> weights_{};
  std::vector<double> values_;
  std::vector<std::uint8_t> labels_;
};

}  // namespace

ReactionShift CompareReactions(const std::vector<double>& baseline,
                               const std::vector<double>& recent, int permutations,
                               std::uint64_t seed) {
  ReactionShift r;
  if (baseline.empty() || recent.empty())
    return r;
  PooledSplit split(baseline, recent);
  r.shift_ms = split.Shift(nullptr);
  std::vector<double> base = baseline;
  std::vector<double> now = recent;
  r.baseline_p10_ms = *Quantile(base, 0.1);
  r.baseline_p50_ms = *Quantile(base, 0.5);
  r.recent_p10_ms = *Quantile(now, 0.1);
  r.recent_p50_ms = *Quantile(now, 0.5);
  if (permutations <= 0)
    return r;
  std::mt19937_64 rng(seed);
  // Sequential Monte Carlo (Besag & Clifford 1991): once this many splits shifted as far, the
  // p-value is clearly large and more splits only refine it; most windows stop there.
  constexpr int kEnoughAsFar = 20;
  int as_far = 0;
  for (int i = 0; i < permutations; ++i) {
    if (split.Shift(&rng) >= r.shift_ms && ++as_far == kEnoughAsFar) {
      r.p_value = static_cast<double>(as_far) / static_cast<double>(i + 1);
      return r;
    }
  }
  // The observed split counts as one of the splits (Phipson & Smyth 2010): never p = 0.
  r.p_value = static_cast<double>(as_far + 1) / static_cast<double>(permutations + 1);
  return r;
}

}  // namespace relaywatch::detectors::relay
