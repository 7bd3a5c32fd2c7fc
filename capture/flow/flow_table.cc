#include "capture/flow/flow_table.h"

#include <algorithm>
#include <cstring>

namespace relaywatch::flow {
namespace {

using decode::DecodedPacket;

bool LowEndpointIsSource(const DecodedPacket& p) {
  if (p.src != p.dst) {
    return p.src < p.dst;
  }
  return p.src_port <= p.dst_port;
}

// FNV-1a, 64 bit: small, fixed and the same in every process, so flow ids and worker
// assignment do not change between runs.
std::uint64_t Fnv1a(std::uint64_t h, const void* data, std::size_t n) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

std::uint64_t KeyHash(const FlowKey& k) {
  std::uint64_t h = 14695981039346656037ULL;
  h = Fnv1a(h, k.lo_ip.data(), k.lo_ip.size());
  h = Fnv1a(h, k.hi_ip.data(), k.hi_ip.size());
  h = Fnv1a(h, &k.lo_port, sizeof k.lo_port);
  h = Fnv1a(h, &k.hi_port, sizeof k.hi_port);
  h = Fnv1a(h, &k.protocol, sizeof k.protocol);
  return h;
}

constexpr std::uint64_t kJsonSafeMask = (std::uint64_t{1} << 53) - 1;

Direction DirectionOf(const FlowState& f, const DecodedPacket& p) {
  return (p.src == f.originator.ip && p.src_port == f.originator.port) ? Direction::kToResponder
                                                                       : Direction::kToOriginator;
}

}  // namespace

FlowKey FlowKey::FromPacket(const DecodedPacket& p) {
  FlowKey k;
  k.protocol = p.protocol;
  if (LowEndpointIsSource(p)) {
    k.lo_ip = p.src;
    k.lo_port = p.src_port;
    k.hi_ip = p.dst;
    k.hi_port = p.dst_port;
  } else {
    k.lo_ip = p.dst;
    k.lo_port = p.dst_port;
    k.hi_ip = p.src;
    k.hi_port = p.src_port;
  }
  return k;
}

std::uint64_t SymmetricFlowHash(const DecodedPacket& packet) {
  return KeyHash(FlowKey::FromPacket(packet));
}

FlowTable::FlowTable(FlowTableConfig config, EndCallback on_end)
    : config_(config), on_end_(std::move(on_end)) {
  flows_.reserve(std::min<std::size_t>(config_.max_flows, 65536));
}

FlowTable::~FlowTable() = default;

absl::Duration FlowTable::Timeout(List list) const {
  switch (list) {
    case kTcpList:
      return config_.tcp_idle_timeout;
    case kClosedList:
      return config_.closed_timeout;
    default:
      return config_.udp_idle_timeout;
  }
}

void FlowTable::Unlink(FlowState* f) {
  ListHead& l = lists_[f->list_];
  (f->prev_ ? f->prev_->next_ : l.head) = f->next_;
  (f->next_ ? f->next_->prev_ : l.tail) = f->prev_;
  f->prev_ = f->next_ = nullptr;
}

void FlowTable::Append(FlowState* f, List list) {
  ListHead& l = lists_[list];
  f->list_ = list;
  f->prev_ = l.tail;
  f->next_ = nullptr;
  (l.tail ? l.tail->next_ : l.head) = f;
  l.tail = f;
}

FlowState& FlowTable::Create(const FlowKey& key, const DecodedPacket& p) {
  if (flows_.size() >= config_.max_flows) {
    EvictIdlest();
  }
  auto state = std::make_unique<FlowState>();
  FlowState& f = *state;
  f.key = key;
  f.protocol = p.protocol;
  f.first_seen = f.last_seen = p.ts;
  f.vlan_id = p.vlan_id;
  f.tunnel_depth = p.tunnel_depth;
  bool sender_is_originator = true;
  if (p.is_tcp() && p.has(decode::kTcpSyn)) {
    // SYN: the sender opened the connection. SYN/ACK: the receiver did.
    sender_is_originator = !p.has(decode::kTcpAck);
    f.originator_from_handshake = true;
  } else if (p.src_port < 1024 && p.dst_port >= 1024) {
    // Mid-stream start: a well-known port on the sender's side marks it as the server.
    sender_is_originator = false;
  }
  const Endpoint src{p.src, p.src_port};
  const Endpoint dst{p.dst, p.dst_port};
  f.originator = sender_is_originator ? src : dst;
  f.responder = sender_is_originator ? dst : src;
  const std::int64_t first_ns = absl::ToUnixNanos(p.ts);
  f.id = Fnv1a(KeyHash(key), &first_ns, sizeof first_ns) & kJsonSafeMask;
  FlowState* raw = state.get();
  flows_.emplace(key, std::move(state));
  Append(raw, p.is_tcp() ? kTcpList : kOtherList);
  counters_.created.Increment();
  counters_.active.Set(flows_.size());
  return f;
}

void FlowTable::End(FlowState* f, EndReason reason) {
  Unlink(f);
  switch (reason) {
    case EndReason::kIdle:
      counters_.expired.Increment();
      break;
    case EndReason::kClosed:
      counters_.closed.Increment();
      break;
    case EndReason::kEvicted:
      counters_.evicted.Increment();
      break;
    default:
      break;
  }
  if (on_end_) {
    on_end_(*f, reason);
  }
  flows_.erase(f->key);  // destroys f
  counters_.active.Set(flows_.size());
}

void FlowTable::EvictIdlest() {
  FlowState* idlest = nullptr;
  for (const ListHead& l : lists_) {
    if (l.head && (!idlest || l.head->touched_ < idlest->touched_)) {
      idlest = l.head;
    }
  }
  if (idlest) {
    End(idlest, EndReason::kEvicted);
  }
}

// What two copies of one packet share and a retransmission or the next packet does not: a
// Linux sender numbers every IPv4 packet, and a TCP timestamp or payload moves on; a copy
// differs only in its TTL, link header and checksum.
bool FlowTable::SeenBefore(const FlowKey& key, int side, const DecodedPacket& p) {
  if (config_.duplicate_window <= absl::ZeroDuration())
    return false;
  if (seen_.empty())
    seen_.resize(kSeenSlots);
  // A fixed multiply-xorshift over 8-byte words: the same in every run, so a replay drops
  // the same copies (absl::Hash is seeded per process), and a few nanoseconds a packet.
  std::uint64_t fingerprint = 0;
  const auto mix = [&fingerprint](std::uint64_t v) {
    fingerprint = (fingerprint ^ v) * 0x9e3779b97f4a7c15ULL;
    fingerprint ^= fingerprint >> 29;
  };
  const auto mix_bytes = [&mix](const std::uint8_t* data, std::size_t n) {
    for (std::size_t i = 0; i < n; i += 8) {
      std::uint64_t word = 0;
      std::memcpy(&word, data + i, std::min<std::size_t>(8, n - i));
      mix(word);
    }
  };
  mix_bytes(key.lo_ip.data(), key.lo_ip.size());
  mix_bytes(key.hi_ip.data(), key.hi_ip.size());
  mix(std::uint64_t{key.lo_port} << 48 | std::uint64_t{key.hi_port} << 32 |
      std::uint64_t{key.protocol} << 24 | static_cast<std::uint64_t>(side));
  mix(std::uint64_t{p.ip_id} << 48 | std::uint64_t{p.window} << 32 |
      std::uint64_t{p.tcp_flags} << 24);
  mix(std::uint64_t{p.seq} << 32 | p.ack);
  mix(std::uint64_t{p.tcp_options.ts_value} << 32 | p.payload_length);
  mix_bytes(p.payload.data(), std::min<std::size_t>(p.payload.size(), 32));
  const std::int64_t now = absl::ToUnixNanos(p.ts);
  // Two ways: a packet between another and its copy displaces neither unless both ways
  // are taken by packets newer than the first.
  Seen* way = &seen_[(fingerprint >> (64 - kSeenBits)) & ~std::size_t{1}];
  const std::int64_t window = absl::ToInt64Nanoseconds(config_.duplicate_window);
  for (int i = 0; i < 2; ++i) {
    Seen& slot = way[i];
    if (slot.fingerprint == fingerprint && now >= slot.ts_ns && now - slot.ts_ns <= window) {
      slot.ts_ns = now;  // a copy of a copy (a capture that held the packet twice already)
      return true;
    }
  }
  way[way[1].ts_ns < way[0].ts_ns ? 1 : 0] = {fingerprint, now};
  return false;
}

FlowState& FlowTable::Track(const DecodedPacket& p, Direction& direction, bool& duplicate) {
  Advance(p.ts);
  const FlowKey key = FlowKey::FromPacket(p);
  // Before anything else: a copy of a SYN must not read as a new connection on the ports.
  duplicate = SeenBefore(key, LowEndpointIsSource(p) ? 0 : 1, p);
  if (duplicate) {
    if (auto it = flows_.find(key); it != flows_.end()) {
      direction = DirectionOf(*it->second, p);
      counters_.duplicates.Increment();
      return *it->second;
    }
    duplicate = false;  // its flow is gone (evicted): taken as a packet of a new one
  }
  FlowState* f = nullptr;
  if (auto it = flows_.find(key); it != flows_.end()) {
    f = it->second.get();
    // A fresh SYN on a finished connection is a new connection reusing the ports.
    if (p.is_tcp() && p.has(decode::kTcpSyn) && !p.has(decode::kTcpAck) && f->closed()) {
      End(f, EndReason::kReused);
      f = nullptr;
    }
  }
  if (f == nullptr) {
    f = &Create(key, p);
  }
  direction = DirectionOf(*f, p);
  const int d = Index(direction);
  DirectionStats& s = f->stats[d];
  ++s.packets;
  s.bytes += p.wire_length;
  s.payload_bytes += p.payload_length;
  if (p.ts > f->last_seen) {
    f->last_seen = p.ts;
  }
  f->touched_ = now_;
  if (p.is_tcp()) {
    s.tcp_flags |= p.tcp_flags;
    if (p.has(decode::kTcpSyn)) {
      if (!p.has(decode::kTcpAck) && direction == Direction::kToResponder &&
          f->syn_time == absl::InfinitePast()) {
        f->syn_time = p.ts;
      } else if (p.has(decode::kTcpAck) && direction == Direction::kToOriginator &&
                 f->syn_ack_time == absl::InfinitePast()) {
        f->syn_ack_time = p.ts;
      }
    } else if (p.has(decode::kTcpAck) && direction == Direction::kToResponder &&
               f->syn_ack_time != absl::InfinitePast() && f->ack_time == absl::InfinitePast()) {
      f->ack_time = p.ts;
    }
    if (p.has(decode::kTcpFin)) {
      f->fin_seen[d] = true;
    }
    if (p.has(decode::kTcpRst)) {
      f->rst_seen = true;
    }
  }
  // Keep the idle list ordered by last touch; a flow already at its list's tail (a burst of
  // one flow's packets, the common case) needs no relink.
  const List list = f->closed() ? kClosedList : (p.is_tcp() ? kTcpList : kOtherList);
  if (f->list_ != list || f->next_ != nullptr) {
    Unlink(f);
    Append(f, list);
  }
  return *f;
}

void FlowTable::Advance(PacketTime now) {
  // Merged pcaps can step backwards; the clock never does.
  if (now > now_) {
    now_ = now;
  }
  for (int l = 0; l < kListCount; ++l) {
    const absl::Duration timeout = Timeout(static_cast<List>(l));
    while (lists_[l].head && lists_[l].head->touched_ + timeout < now_) {
      End(lists_[l].head, l == kClosedList ? EndReason::kClosed : EndReason::kIdle);
    }
  }
}

bool FlowTable::EndAll(EndReason reason, std::size_t max) {
  for (int l = 0; l < kListCount; ++l) {
    while (lists_[l].head) {
      if (max-- == 0) {
        return true;
      }
      End(lists_[l].head, reason);
    }
  }
  return false;
}

}  // namespace relaywatch::flow
