#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"

#include "capture/base/counter.h"
#include "capture/base/ip_address.h"
#include "capture/base/packet_time.h"
#include "capture/decode/decoded_packet.h"

namespace relaywatch::flow {

// A flow key independent of direction: the lower (address, port) endpoint comes first, so
// both directions of a connection find the same entry and hash alike.
struct FlowKey {
  IpAddress lo_ip;
  IpAddress hi_ip;
  std::uint16_t lo_port = 0;
  std::uint16_t hi_port = 0;
  std::uint8_t protocol = 0;

  static FlowKey FromPacket(const decode::DecodedPacket& packet);
  friend bool operator==(const FlowKey&, const FlowKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const FlowKey& k) {
    return H::combine(std::move(h), k.lo_ip, k.hi_ip, k.lo_port, k.hi_port, k.protocol);
  }
};

// A hash of the flow's endpoints that is the same for both directions and the same in
// every process (unlike absl::Hash), used to spread flows over workers.
std::uint64_t SymmetricFlowHash(const decode::DecodedPacket& packet);

struct Endpoint {
  IpAddress ip;
  std::uint16_t port = 0;
};

// Direction of a packet relative to the flow's originator (the SYN sender).
enum class Direction : std::uint8_t { kToResponder = 0, kToOriginator = 1 };
inline int Index(Direction d) { return static_cast<int>(d); }

struct DirectionStats {
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;          // wire bytes
  std::uint64_t payload_bytes = 0;  // L4 payload bytes announced by the headers
  std::uint8_t tcp_flags = 0;       // union of flags seen
};

// Per-flow state a detector keeps; owned by the flow, destroyed after OnFlowEnd.
class DetectorFlowData {
 public:
  virtual ~DetectorFlowData() = default;
};

inline constexpr int kMaxDetectors = 16;

enum class EndReason : std::uint8_t { kIdle, kClosed, kEvicted, kShutdown, kReused };

struct FlowState {
  std::uint64_t id = 0;  // stable across runs for the same traffic; below 2^53 for JSON
  FlowKey key;
  Endpoint originator;
  Endpoint responder;
  std::uint8_t protocol = 0;
  // True when the originator is known from the handshake (SYN or SYN/ACK seen); otherwise
  // it was guessed from ports and packet order.
  bool originator_from_handshake = false;
  PacketTime first_seen;
  PacketTime last_seen;
  std::array<DirectionStats, 2> stats;
  // TCP handshake times at the sensor; absl::InfinitePast() until seen.
  PacketTime syn_time = absl::InfinitePast();
  PacketTime syn_ack_time = absl::InfinitePast();
  PacketTime ack_time = absl::InfinitePast();
  bool fin_seen[2] = {false, false};
  bool rst_seen = false;
  std::uint16_t vlan_id = 0;
  std::uint8_t tunnel_depth = 0;

  // One bit per detector index: the detector has decided and wants no more packets.
  std::uint32_t detectors_done = 0;
  std::array<std::unique_ptr<DetectorFlowData>, kMaxDetectors> detector_data;

  bool closed() const { return rst_seen || (fin_seen[0] && fin_seen[1]); }
  const Endpoint& sender(Direction d) const {
    return d == Direction::kToResponder ? originator : responder;
  }
  const Endpoint& receiver(Direction d) const {
    return d == Direction::kToResponder ? responder : originator;
  }

 private:
  friend class FlowTable;
  FlowState* prev_ = nullptr;  // intrusive idle list, least recently seen first
  FlowState* next_ = nullptr;
  std::uint8_t list_ = 0;
  // The table's clock at the last packet: idleness is measured on it, not on last_seen, so
  // a merged capture whose time steps back does not age every later flow out at once.
  PacketTime touched_;
};

struct FlowTableConfig {
  std::size_t max_flows = 262144;
  absl::Duration tcp_idle_timeout = absl::Minutes(10);
  absl::Duration udp_idle_timeout = absl::Minutes(2);
  absl::Duration closed_timeout = absl::Seconds(10);
  // A packet equal to one its flow's same side sent within this time (IP ID, TCP sequence,
  // acknowledgement, flags, window, timestamp, length and first payload bytes) is a second
  // copy of it: the sensor hears both sides of a router, or a SPAN session mirrors a packet
  // as it enters and as it leaves. Zero keeps every copy.
  absl::Duration duplicate_window = absl::Milliseconds(2);
};

struct FlowTableCounters {
  WorkerCounter created;
  WorkerCounter expired;   // idle timeout
  WorkerCounter closed;    // FIN/RST then quiet
  WorkerCounter evicted;   // capacity reached: the idlest flow made room
  WorkerCounter active;    // gauge
  WorkerCounter duplicates;  // second copies of a packet, not tracked (duplicate_window)
};

// FlowTable maps a flow key to per-flow state for one worker.
//
// Capacity: at most `config.max_flows` entries; inserting into a full table evicts the flow
// idle longest and counts it. Expired, closed and evicted flows are handed to `on_end`
// before their state is destroyed.
// Thread-safety: none. Owned and used by a single worker thread.
// Time: driven only by packet timestamps (Track and Advance); never reads the host clock.
class FlowTable {
 public:
  using EndCallback = std::function<void(FlowState&, EndReason)>;
  FlowTable(FlowTableConfig config, EndCallback on_end);
  ~FlowTable();
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;

  // Finds or creates the flow of `packet` and updates its counters and handshake times.
  // `direction` receives the packet's direction relative to the originator. A second copy
  // of a packet (duplicate_window) changes nothing and sets `duplicate`: the caller passes
  // it to no detector, since a copy would read as a retransmission.
  FlowState& Track(const decode::DecodedPacket& packet, Direction& direction, bool& duplicate);
  // For callers that hand every packet on themselves (unit tests, fuzzing).
  FlowState& Track(const decode::DecodedPacket& packet, Direction& direction) {
    bool duplicate = false;
    return Track(packet, direction, duplicate);
  }

  // Moves the table's clock forward (never back) and ends flows idle past their timeout.
  void Advance(PacketTime now);
  // Ends every flow (shutdown, end of replay), or at most `max` of them: returns true while
  // flows remain, so a caller can hand each part's events on before the next.
  bool EndAll(EndReason reason, std::size_t max = SIZE_MAX);

  std::size_t size() const { return flows_.size(); }
  PacketTime now() const { return now_; }
  const FlowTableCounters& counters() const { return counters_; }

 private:
  enum List : std::uint8_t { kTcpList, kOtherList, kClosedList, kListCount };
  struct ListHead {
    FlowState* head = nullptr;
    FlowState* tail = nullptr;
  };

  FlowState& Create(const FlowKey& key, const decode::DecodedPacket& packet);
  // `side`: 0 when the packet comes from the key's lower endpoint, else 1.
  bool SeenBefore(const FlowKey& key, int side, const decode::DecodedPacket& packet);
  void End(FlowState* flow, EndReason reason);
  void Unlink(FlowState* flow);
  void Append(FlowState* flow, List list);
  absl::Duration Timeout(List list) const;
  void EvictIdlest();

  FlowTableConfig config_;
  EndCallback on_end_;
  absl::flat_hash_map<FlowKey, std::unique_ptr<FlowState>> flows_;
  std::array<ListHead, kListCount> lists_;
  PacketTime now_ = absl::InfinitePast();
  FlowTableCounters counters_;
  // The packets of the last duplicate_window, by fingerprint (direct-mapped: a collision
  // forgets the older one). A router forwards in tens of microseconds, in which a busy link
  // carries other packets of the same flow, so this is per table, not per flow.
  struct Seen {
    std::uint64_t fingerprint = 0;
    std::int64_t ts_ns = 0;
  };
  // 256 KiB: a copy comes microseconds after its packet, so only the packets between the
  // two can take its slot, and a table this size stays in the cache.
  static constexpr int kSeenBits = 14;
  static constexpr std::size_t kSeenSlots = std::size_t{1} << kSeenBits;
  std::vector<Seen> seen_;
};

}  // namespace relaywatch::flow
