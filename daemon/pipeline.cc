#include "daemon/pipeline.h"

#include <net/if.h>

#include <algorithm>
#include <chrono>
#include <initializer_list>
#include <iterator>
#include <map>
#include <utility>  // before boost/asio.hpp: Boost 1.74 + gcc 12 in C++20

#include "absl/algorithm/container.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include <boost/asio.hpp>

#include "capture/decode/decoder.h"
#include "capture/flow/flow_table.h"
#include "capture/offload.h"
#include "daemon/log.h"
#include "daemon/sinks/jsonl_sink.h"
#include "daemon/sinks/syslog_sink.h"

namespace relaywatch::daemon {
namespace {

constexpr std::size_t kBatchPackets = 4096;
constexpr std::size_t kOutputQueueCapacity = 65536;
constexpr std::size_t kHostQueueCapacity = 65536;
// Flows ended at a time when a live worker stops, between hand-overs to the host stage.
constexpr std::size_t kFinishPart = 4096;
// A live handle that lost its interface is opened again this often.
constexpr absl::Duration kReopenInterval = absl::Seconds(5);

std::int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct Pipeline::LiveWorker {
  Worker* worker = nullptr;
  std::vector<std::unique_ptr<capture::PcapSource>> sources;
  std::vector<std::string> interfaces;
  // Per source: how to open it again, the totals of the handles it lost, and when to try
  // a reopen next (0 while it captures; its source is null until then).
  std::vector<capture::LiveOptions> options;
  std::vector<capture::CaptureStats> stats_base;
  std::vector<std::int64_t> reopen_at_ns;
  // The device's index when opened: a device deleted and made again gets a new one.
  std::vector<unsigned> ifindex;
  boost::asio::io_context io;
  std::vector<std::unique_ptr<boost::asio::posix::stream_descriptor>> descriptors;
  std::unique_ptr<boost::asio::steady_timer> timer;
  std::thread thread;
  std::atomic<std::int64_t> heartbeat_ns{0};
  // Capture statistics per source, published for the metrics thread.
  std::vector<std::array<std::atomic<std::uint64_t>, 3>> stats;
  std::vector<std::atomic<bool>> up;
  // Per source: the interface's receive offloads when last opened (kOffload* bits; -1: not
  // a network device, or unread).
  std::vector<std::atomic<int>> offloads;
  PacketTime last_packet_ts = absl::InfinitePast();
  std::int64_t last_packet_wall_ns = 0;
  std::shared_ptr<const Config> applied_config;

  ~LiveWorker() {
    // The pcap handle owns the descriptor: release it so it is not closed twice.
    for (auto& d : descriptors) {
      d->release();
    }
  }
};

Pipeline::Pipeline(const Config& config, int workers) : config_(config), worker_count_(workers) {}

Pipeline::~Pipeline() { Stop(); }

absl::StatusOr<std::unique_ptr<Pipeline>> Pipeline::Create(const Config& config, int workers) {
  std::unique_ptr<Pipeline> p(new Pipeline(config, std::max(1, workers)));
  // flows.max_flows bounds the whole process, so memory does not grow with the core count:
  // each worker's table holds its share (flows are spread evenly by hash).
  Config per_worker = config;
  per_worker.flows.max_flows = std::max<std::size_t>(
      1024, config.flows.max_flows / static_cast<std::size_t>(p->worker_count_));
  for (int i = 0; i < p->worker_count_; ++i) {
    p->workers_.push_back(std::make_unique<Worker>(i, per_worker));
  }
  p->host_ = std::make_unique<host::HostStage>(config.alerting);
  if (const std::string& state = config.alerting.scoring.state_file; !state.empty()) {
    // A damaged score file must not stop the sensor: it starts from empty and says so.
    if (absl::Status s = p->host_->LoadState(state); !s.ok()) {
      RW_LOG(kError, "scores not restored: %s", s.ToString());
    }
  }
  std::vector<std::unique_ptr<sinks::Sink>> sinks;
  if (config.jsonl_enabled) {
    auto jsonl = sinks::JsonlSink::Open(config.jsonl);
    if (!jsonl.ok()) {
      return jsonl.status();
    }
    sinks.push_back(std::move(*jsonl));
  }
  if (config.syslog_enabled) {
    auto syslog = sinks::SyslogSink::Create(config.syslog);
    if (!syslog.ok()) {
      return syslog.status();
    }
    sinks.push_back(std::move(*syslog));
  }
  p->output_ = std::make_unique<OutputStage>(std::move(sinks), kOutputQueueCapacity);
  p->output_->Start();
  return p;
}

void Pipeline::PublishFindings(std::vector<Event> findings, bool wait) {
  std::vector<Event> publish;
  for (Event& finding : findings) {
    host_->Process(std::move(finding), publish);
  }
  for (Event& event : publish) {
    output_->Push(std::move(event), wait);
  }
}

// ---------------------------------------------------------------------------------------
// Replay

void Pipeline::RunBatch() {
  if (worker_count_ > 1) {
    absl::MutexLock lock(&batch_mu_);
    batch_pending_ = worker_count_;
    ++batch_generation_;
    const auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(batch_mu_) {
      return batch_pending_ == 0;
    };
    batch_mu_.Await(absl::Condition(&done));
  }
  // Every worker's clock reaches the batch's end, so idle flows expire in the same batch
  // whatever the worker count, and the merged output does not depend on it.
  std::vector<Event> merged;
  for (int i = 0; i < worker_count_; ++i) {
    if (batch_end_ != absl::InfinitePast()) {
      workers_[i]->Advance(batch_end_);
    }
    std::vector<Event> events = workers_[i]->TakeEvents();
    std::move(events.begin(), events.end(), std::back_inserter(merged));
    batches_[i].items.clear();
    batches_[i].bytes.clear();
  }
  std::stable_sort(merged.begin(), merged.end(),
                   [](const Event& a, const Event& b) { return a.ts < b.ts; });
  PublishFindings(std::move(merged), /*wait=*/true);
}

bool Pipeline::ReplayFile(capture::PcapSource& source) {
  capture::Frame frame;
  decode::DecodedPacket packet;
  std::size_t in_batch = 0;
  std::uint64_t n = 0;
  bool whole = true;
  std::vector<int> unsupported_said;  // a pcapng interface's link type we cannot decode
  while (!interrupted_.load(std::memory_order_relaxed)) {
    const capture::NextResult r = source.Next(frame);
    if (r != capture::NextResult::kPacket) {
      if (r == capture::NextResult::kError) {
        RW_LOG(kError, "%s (replay stopped in this file; what it held before is used)",
               source.error());
        whole = false;
      }
      break;
    }
    if (!decode::IsSupportedLinkType(frame.datalink) &&
        absl::c_find(unsupported_said, frame.datalink) == unsupported_said.end()) {
      unsupported_said.push_back(frame.datalink);
      RW_LOG(kWarning,
             "%s: packets of link type %d are not decoded: skipped and counted as "
             "unsupported_link_type",
             source.name(), frame.datalink);
    }
    frames_.Increment();
    frame_bytes_.Increment(frame.wire_length);
    if ((++n & 0xfff) == 0) {
      file_progress_.store(source.progress(), std::memory_order_relaxed);
    }
    if (!decode::DecodeFrame(frame.datalink, {frame.data, frame.captured_length}, frame.wire_length,
                             frame.ts, packet, reader_decode_)) {
      continue;
    }
    if (packet.ts > batch_end_) {
      batch_end_ = packet.ts;
    }
    if (worker_count_ == 1) {
      workers_[0]->ProcessDecoded(packet);  // no copy: the reader is the only worker
    } else {
      // Copy the frame into the chosen worker's batch and keep the payload as offsets: the
      // worker rebases the view onto the copy.
      Batch& b = batches_[flow::SymmetricFlowHash(packet) % worker_count_];
      BatchItem& item = b.items.emplace_back();
      item.packet = packet;
      item.frame_offset = static_cast<std::uint32_t>(b.bytes.size());
      item.payload_offset = static_cast<std::uint32_t>(packet.payload.data() - frame.data);
      b.bytes.insert(b.bytes.end(), frame.data, frame.data + frame.captured_length);
    }
    if (++in_batch >= kBatchPackets) {
      RunBatch();
      in_batch = 0;
    }
  }
  if (in_batch > 0) {
    RunBatch();
  }
  return whole;
}

absl::Status Pipeline::Replay(const std::vector<std::string>& files) {
  batches_.assign(worker_count_, Batch{});
  if (worker_count_ > 1) {
    for (int i = 0; i < worker_count_; ++i) {
      batch_threads_.emplace_back([this, i] {
        std::uint64_t seen = 0;
        while (true) {
          {
            absl::MutexLock lock(&batch_mu_);
            const auto next = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(batch_mu_) {
              return batch_generation_ != seen || batch_quit_;
            };
            batch_mu_.Await(absl::Condition(&next));
            if (batch_quit_) {
              return;
            }
            seen = batch_generation_;
          }
          Batch& b = batches_[i];
          for (BatchItem& item : b.items) {
            item.packet.payload = {b.bytes.data() + item.frame_offset + item.payload_offset,
                                   item.packet.payload.size()};
            workers_[i]->ProcessDecoded(item.packet);
          }
          absl::MutexLock lock(&batch_mu_);
          --batch_pending_;
        }
      });
    }
  }
  absl::Status status = absl::OkStatus();
  std::vector<std::string> damaged;
  for (std::size_t i = 0; i < files.size() && !interrupted_.load(); ++i) {
    file_index_.store(static_cast<int>(i + 1));
    file_progress_.store(0);
    auto source = capture::PcapSource::OpenOffline(files[i], config_.capture.bpf);
    if (!source.ok()) {
      status = source.status();
      break;
    }
    if (!ReplayFile(**source)) {
      damaged.push_back(files[i]);
    }
    file_progress_.store(1);
  }
  // Like tcpdump, a damaged file fails the replay; unlike it, the rest is still read and
  // everything found is delivered first.
  if (status.ok() && !damaged.empty()) {
    status = absl::DataLossError(absl::StrCat("read only up to the damage in ", damaged.size(),
                                              " of ", files.size(),
                                              " capture files: ", absl::StrJoin(damaged, ", ")));
  }
  // End every flow, on its worker's thread of record (the batch machinery), so detectors
  // conclude and one-sided sessions are reported.
  for (auto& w : workers_) {
    w->Finish();
  }
  RunBatch();
  {
    absl::MutexLock lock(&batch_mu_);
    batch_quit_ = true;
  }
  for (auto& t : batch_threads_) {
    t.join();
  }
  batch_threads_.clear();
  SaveScores();
  output_->Stop();
  return status;
}

// ---------------------------------------------------------------------------------------
// Live capture

namespace {

constexpr int kOffloadGro = 1;
constexpr int kOffloadLro = 2;

// The interface's receive offloads as kOffload* bits (-1: none to read), said once per
// open when `report`: with them on, the capture's packets are merges, not the wire's.
int ReadOffloads(const std::string& interface, bool report) {
  absl::StatusOr<capture::ReceiveOffloads> offloads = capture::ReadReceiveOffloads(interface);
  if (!offloads.ok()) {
    if (report && !absl::IsNotFound(offloads.status())) {
      RW_LOG(kInfo, "%s", offloads.status().message());
    }
    return -1;
  }
  if (report && offloads->any()) {
    RW_LOG(kNotice,
           "%s: receive offload on (%s): a flow's back-to-back segments reach the capture "
           "merged into one packet, so packet counts and sizes are the offload's (the timing "
           "methods were measured with it, docs/architecture.md \"Receive offload\"); "
           "`ethtool -K %s gro off lro off` gives wire-sized packets",
           interface, capture::OffloadNames(*offloads), interface);
  }
  return (offloads->gro ? kOffloadGro : 0) | (offloads->lro ? kOffloadLro : 0);
}

}  // namespace

absl::Status Pipeline::StartLive(const std::vector<std::string>& interfaces) {
  // Interfaces that cannot fan out (nflog groups) are captured by the first worker alone:
  // several handles on them would each see every packet.
  std::vector<bool> first_worker_only(interfaces.size(), false);
  for (int i = 0; i < worker_count_; ++i) {
    auto live = std::make_unique<LiveWorker>();
    live->worker = workers_[i].get();
    for (std::size_t k = 0; k < interfaces.size(); ++k) {
      if (i > 0 && first_worker_only[k]) {
        continue;
      }
      capture::LiveOptions options;
      options.interface = interfaces[k];
      options.bpf = config_.capture.bpf;
      options.snaplen = config_.capture.snaplen;
      options.buffer_size_mib = config_.capture.buffer_size_mib;
      options.promiscuous = config_.capture.promiscuous;
      // One fanout group per interface, distinct per process so two daemons do not mix.
      options.fanout_group =
          worker_count_ > 1 ? static_cast<int>(((getpid() & 0xfff) << 4) + k + 1) : 0;
      auto source = capture::PcapSource::OpenLive(options);
      if (!source.ok() && absl::IsFailedPrecondition(source.status()) && i == 0) {
        RW_LOG(kInfo, "%s; one worker captures %s", source.status().message(), interfaces[k]);
        first_worker_only[k] = true;
        options.fanout_group = 0;
        source = capture::PcapSource::OpenLive(options);
      }
      if (!source.ok()) {
        return source.status();
      }
      auto descriptor = std::make_unique<boost::asio::posix::stream_descriptor>(
          live->io, (*source)->selectable_fd());
      live->descriptors.push_back(std::move(descriptor));
      live->sources.push_back(std::move(*source));
      live->interfaces.push_back(interfaces[k]);
      live->options.push_back(options);
      // 0 for what is no network device (nflog:N, any): nothing to watch.
      live->ifindex.push_back(::if_nametoindex(interfaces[k].c_str()));
    }
    live->offloads = std::vector<std::atomic<int>>(live->interfaces.size());
    for (std::size_t k = 0; k < live->interfaces.size(); ++k) {
      live->offloads[k].store(ReadOffloads(live->interfaces[k], i == 0));
    }
    live->stats = std::vector<std::array<std::atomic<std::uint64_t>, 3>>(live->sources.size());
    live->stats_base.resize(live->sources.size());
    live->reopen_at_ns.assign(live->sources.size(), 0);
    live->up = std::vector<std::atomic<bool>>(live->sources.size());
    for (auto& up : live->up) {
      up.store(true);
    }
    live->timer = std::make_unique<boost::asio::steady_timer>(live->io);
    live_.push_back(std::move(live));
  }
  host_thread_ = std::thread([this] { HostLoop(); });
  for (auto& live : live_) {
    LiveWorker* lw = live.get();
    lw->heartbeat_ns.store(SteadyNanos());
    lw->thread = std::thread([this, lw] { LiveLoop(*lw); });
  }
  live_started_.store(true);
  return absl::OkStatus();
}

void Pipeline::LiveLoop(LiveWorker& lw) {
  Worker& worker = *lw.worker;
  // `wait`: at shutdown every finding waits for room instead (nothing is shed then, and the
  // queue stays bounded while the flows end part by part).
  const auto flush_findings = [&](bool wait = false) {
    std::vector<Event> events = worker.TakeEvents();
    if (events.empty()) {
      return;
    }
    absl::MutexLock lock(&host_mu_);
    const auto has_room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(host_mu_) {
      return host_queue_.size() < kHostQueueCapacity || host_stop_;
    };
    for (Event& e : events) {
      if (wait) {
        host_mu_.Await(absl::Condition(&has_room));
      } else if (host_queue_.size() >= kHostQueueCapacity && !e.must_deliver() &&
                 e.event_type == "flow") {
        findings_dropped_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      host_queue_.push_back(std::move(e));
    }
  };
  // The interface went away (a VM's NIC replaced, a VPN device recreated): the handle is
  // dead for good, so the tick opens it again, first at once, then every few seconds, and
  // the daemon keeps its flows meanwhile. It is closed now, not at the reopen: its fanout
  // group would refuse the new handle while a member is bound to the vanished device.
  const auto lose = [&](std::size_t k, const std::string& why) {
    RW_LOG(kError, "%s; capture stopped there, opening it again every %d s", why,
           absl::ToInt64Seconds(kReopenInterval));
    lw.stats_base[k] += lw.sources[k]->ReadStats();
    // The handle owns its descriptor: let go of it (a wait on it ends aborted) before the
    // handle closes it.
    lw.descriptors[k]->release();
    lw.sources[k].reset();
    lw.up[k].store(false);
    lw.reopen_at_ns[k] = SteadyNanos();
  };
  std::function<void(std::size_t)> arm = [&](std::size_t k) {
    lw.descriptors[k]->async_wait(
        boost::asio::posix::stream_descriptor::wait_read, [&, k](boost::system::error_code ec) {
          if (ec) {
            return;
          }
          capture::Frame frame;
          capture::PcapSource& source = *lw.sources[k];
          bool lost = false;
          // Drain a bounded batch, then yield to the other interfaces and the timer.
          for (int i = 0; i < 1024; ++i) {
            const capture::NextResult r = source.Next(frame);
            if (r != capture::NextResult::kPacket) {
              lost = r == capture::NextResult::kError;
              break;
            }
            worker.ProcessFrame(source.datalink(), frame);
            lw.last_packet_ts = frame.ts;
            lw.last_packet_wall_ns = SteadyNanos();
          }
          flush_findings();
          if (lost) {
            lose(k, source.error());
            return;
          }
          arm(k);
        });
  };
  const auto reopen = [&](std::size_t k, std::int64_t now) {
    absl::StatusOr<std::unique_ptr<capture::PcapSource>> fresh =
        capture::PcapSource::OpenLive(lw.options[k]);
    if (!fresh.ok()) {
      lw.reopen_at_ns[k] = now + absl::ToInt64Nanoseconds(kReopenInterval);
      return;
    }
    lw.descriptors[k] =
        std::make_unique<boost::asio::posix::stream_descriptor>(lw.io, (*fresh)->selectable_fd());
    lw.sources[k] = std::move(*fresh);
    lw.ifindex[k] = ::if_nametoindex(lw.interfaces[k].c_str());
    // A device made again may come with other settings; the first worker says so.
    lw.offloads[k].store(ReadOffloads(lw.interfaces[k], lw.worker == workers_[0].get()));
    lw.reopen_at_ns[k] = 0;
    lw.up[k].store(true);
    RW_LOG(kNotice, "%s: capturing again", lw.interfaces[k]);
    arm(k);
  };
  std::function<void()> tick = [&] {
    lw.timer->expires_after(std::chrono::seconds(1));
    lw.timer->async_wait([&](boost::system::error_code ec) {
      if (ec) {
        return;
      }
      const std::int64_t now = SteadyNanos();
      lw.heartbeat_ns.store(now);
      // An idle link still moves time on: packet time of the last packet plus the wall
      // time since, so idle flows expire.
      if (lw.last_packet_ts != absl::InfinitePast()) {
        worker.Advance(lw.last_packet_ts + absl::Nanoseconds(now - lw.last_packet_wall_ns));
      }
      for (std::size_t k = 0; k < lw.sources.size(); ++k) {
        if (lw.sources[k] && lw.ifindex[k] != 0 &&
            ::if_nametoindex(lw.interfaces[k].c_str()) != lw.ifindex[k]) {
          // Gone, or gone and made again within the second: its handle may have had no
          // error to read (a worker that was not waiting on it), so the name is checked.
          lose(k, absl::StrCat(lw.interfaces[k], ": the interface is gone or was made anew"));
        }
        if (lw.reopen_at_ns[k] != 0 && now >= lw.reopen_at_ns[k]) {
          reopen(k, now);
        }
        capture::CaptureStats st = lw.stats_base[k];
        if (lw.sources[k]) {
          st += lw.sources[k]->ReadStats();
        }
        lw.stats[k][0].store(st.received);
        lw.stats[k][1].store(st.dropped);
        lw.stats[k][2].store(st.if_dropped);
      }
      std::shared_ptr<const Config> pending;
      {
        absl::MutexLock lock(&reload_mu_);
        pending = pending_config_;
      }
      if (pending && pending != lw.applied_config) {
        worker.Reconfigure(*pending);
        lw.applied_config = pending;
      }
      flush_findings();
      tick();
    });
  };
  for (std::size_t k = 0; k < lw.descriptors.size(); ++k) {
    arm(k);
  }
  tick();
  lw.io.run();
  // Stopped. TPACKET_V3 hands packets over a block at a time, once the block retires
  // (timeout_ms): keep reading for a little longer than that so nothing the kernel already
  // captured is lost, then conclude every flow and hand the findings over.
  const std::int64_t deadline = SteadyNanos() + 300'000'000;
  capture::Frame frame;
  while (SteadyNanos() < deadline) {
    for (auto& source : lw.sources) {
      // A backlog (a flood the worker was behind on) is read whole, its findings handed
      // over every batch as while capturing: held to the end they would grow without bound.
      bool more = source != nullptr;
      while (more) {
        for (int i = 0; i < 1024 && (more = source->Next(frame) == capture::NextResult::kPacket);
             ++i) {
          worker.ProcessFrame(source->datalink(), frame);
        }
        flush_findings(/*wait=*/true);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Part by part: a full table's findings at once (a flood's half-open flows) would double
  // the memory it already holds.
  while (worker.Finish(kFinishPart)) {
    flush_findings(/*wait=*/true);
  }
  flush_findings(/*wait=*/true);
}

void Pipeline::HostLoop() {
  absl::Time last_save = absl::Now();
  while (true) {
    std::deque<Event> batch;
    bool stop = false;
    {
      absl::MutexLock lock(&host_mu_);
      const auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(host_mu_) {
        return !host_queue_.empty() || host_stop_;
      };
      host_mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(1));
      batch.swap(host_queue_);
      stop = host_stop_;
    }
    std::vector<Event> findings(std::make_move_iterator(batch.begin()),
                                std::make_move_iterator(batch.end()));
    PublishFindings(std::move(findings), /*wait=*/false);
    // On this thread, the only one that touches the host stage while live.
    if (absl::Now() - last_save >= config_.alerting.scoring.save_interval) {
      SaveScores();
      last_save = absl::Now();
    }
    if (stop) {
      absl::MutexLock lock(&host_mu_);
      if (host_queue_.empty()) {
        return;
      }
    }
  }
}

void Pipeline::SaveScores() {
  const std::string& path = config_.alerting.scoring.state_file;
  if (path.empty()) {
    return;
  }
  if (absl::Status s = host_->SaveState(path); !s.ok()) {
    RW_LOG(kError, "scores not saved: %s", s.ToString());
  }
}

void Pipeline::Stop() {
  if (live_started_.exchange(false)) {
    for (auto& lw : live_) {
      lw->io.stop();
    }
    for (auto& lw : live_) {
      if (lw->thread.joinable()) {
        lw->thread.join();
      }
    }
    {
      absl::MutexLock lock(&host_mu_);
      host_stop_ = true;
    }
    host_thread_.join();
    SaveScores();
  }
  if (output_) {
    output_->Stop();
  }
}

std::vector<std::pair<std::string, std::uint64_t>> Pipeline::Undelivered() const {
  std::vector<std::pair<std::string, std::uint64_t>> lost;
  for (const auto& sink : output_->sinks()) {
    if (const std::uint64_t n = sink->undelivered(); n > 0) {
      lost.emplace_back(sink->name(), n);
    }
  }
  return lost;
}

void Pipeline::Reload(const Config& config) {
  // Capture settings (interfaces, filter, ring size) need a restart; the rest applies now.
  host_->Reconfigure(config.alerting);
  {
    absl::MutexLock lock(&reload_mu_);
    pending_config_ = std::make_shared<const Config>(config);
  }
  output_->RequestReopen();
  reloads_ok_.fetch_add(1);
}

bool Pipeline::Healthy() const {
  const std::int64_t now = SteadyNanos();
  for (const auto& lw : live_) {
    if (now - lw->heartbeat_ns.load() > 10'000'000'000LL) {
      return false;
    }
  }
  return true;
}

std::string Pipeline::StatusLine() const {
  std::uint64_t packets = frames_.Read();
  std::uint64_t drops = 0;
  std::uint64_t received = 0;
  for (const auto& w : workers_) {
    packets += w->counters().packets.Read();
  }
  for (const auto& lw : live_) {
    for (const auto& s : lw->stats) {
      received += s[0].load();
      drops += s[1].load();
    }
  }
  const double ratio = received ? 100.0 * static_cast<double>(drops) / received : 0.0;
  return absl::StrFormat("capturing with %d workers, %d packets, %.2f%% drops", worker_count_,
                         packets, ratio);
}

// ---------------------------------------------------------------------------------------
// Metrics

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily Family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

void Add(MetricFamily& f, std::vector<prometheus::ClientMetric::Label> labels, double value) {
  ClientMetric m;
  m.label = std::move(labels);
  if (f.type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
}

// A family of one unlabelled sample.
void AddSingle(std::vector<MetricFamily>& out, std::string name, std::string help, MetricType type,
               double value) {
  MetricFamily f = Family(std::move(name), std::move(help), type);
  Add(f, {}, value);
  out.push_back(std::move(f));
}

// A family whose samples differ only in the value of one label, in the order given.
void AddByLabel(std::vector<MetricFamily>& out, std::string name, std::string help, MetricType type,
                const std::string& label,
                std::initializer_list<std::pair<const char*, double>> samples) {
  MetricFamily f = Family(std::move(name), std::move(help), type);
  for (const auto& [value, sample] : samples)
    Add(f, {{label, value}}, sample);
  out.push_back(std::move(f));
}

}  // namespace

void Pipeline::AddDetectorCounters(std::vector<MetricFamily>& out) const {
  // Each detector counter is its own family, relaywatch_detector_<detector>_<name>_total,
  // summed over workers: one meaning per family, so sum() and rate() are meaningful.
  struct Series {
    std::size_t family;
    std::string label;
    std::string label_value;
    std::uint64_t value;
  };
  std::vector<MetricFamily> families;
  std::map<std::string, std::size_t> family_index;
  std::vector<Series> series;
  for (const auto& w : workers_) {
    for (const DetectorCounterTotal& c : w->DetectorCounters()) {
      std::string name = absl::StrCat("relaywatch_detector_", c.detector, "_", c.name, "_total");
      // Not a structured binding: clang 14 (the fuzz build) cannot capture one in a lambda.
      const auto inserted = family_index.try_emplace(std::move(name), families.size());
      if (inserted.second) {
        families.push_back(Family(inserted.first->first, c.help, MetricType::Counter));
      }
      const std::size_t family = inserted.first->second;
      auto it = std::find_if(series.begin(), series.end(), [&](const Series& s) {
        return s.family == family && s.label == c.label && s.label_value == c.label_value;
      });
      if (it == series.end()) {
        series.push_back({family, c.label, c.label_value, 0});
        it = std::prev(series.end());
      }
      it->value += c.value;
    }
  }
  for (const Series& s : series) {
    std::vector<ClientMetric::Label> labels;
    if (!s.label.empty()) {
      labels.push_back({s.label, s.label_value});
    }
    Add(families[s.family], std::move(labels), static_cast<double>(s.value));
  }
  std::move(families.begin(), families.end(), std::back_inserter(out));
}

std::vector<MetricFamily> Pipeline::CollectMetrics() const {
  std::vector<MetricFamily> out;
  auto info = Family("relaywatch_build_info", "Build information; always 1.", MetricType::Gauge);
  Add(info, {{"version", RELAYWATCH_VERSION}, {"libpcap", pcap_lib_version()}}, 1);
  out.push_back(std::move(info));

  std::uint64_t packets = frames_.Read();
  std::uint64_t bytes = frame_bytes_.Read();
  auto worker_packets = Family("relaywatch_worker_packets_total",
                               "Decoded packets analysed, by worker.", MetricType::Counter);
  auto flows_active = Family("relaywatch_flows_active", "Flows in the flow tables, by worker.",
                             MetricType::Gauge);
  std::array<std::uint64_t, decode::kDecodeReasonCount> reasons{};
  std::uint64_t created = 0, expired = 0, closed = 0, evicted = 0, tunnelled = 0, duplicates = 0;
  const auto add_decode = [&](const decode::DecodeCounters& c) {
    for (std::size_t r = 0; r < decode::kDecodeReasonCount; ++r) {
      reasons[r] += c.by_reason[r].Read();
    }
    tunnelled += c.tunnelled.Read();
  };
  add_decode(reader_decode_);
  for (const auto& w : workers_) {
    const std::string id = absl::StrCat(w->index());
    Add(worker_packets, {{"worker", id}}, static_cast<double>(w->counters().packets.Read()));
    Add(flows_active, {{"worker", id}}, static_cast<double>(w->flow_counters().active.Read()));
    add_decode(w->decode_counters());
    created += w->flow_counters().created.Read();
    expired += w->flow_counters().expired.Read();
    closed += w->flow_counters().closed.Read();
    evicted += w->flow_counters().evicted.Read();
    duplicates += w->flow_counters().duplicates.Read();
  }
  if (!live_.empty()) {
    packets = 0;
    bytes = 0;
    for (const auto& w : workers_) {
      packets += w->counters().packets.Read();
      bytes += w->counters().bytes.Read();
    }
    std::uint64_t undecoded = 0;
    for (std::size_t r = 0; r < decode::kDecodeReasonCount; ++r) {
      undecoded += reasons[r];
    }
    packets += undecoded;  // every frame read, decodable or not
  }
  AddSingle(out, "relaywatch_packets_total", "Frames read from capture or replay.",
            MetricType::Counter, static_cast<double>(packets));
  AddSingle(out, "relaywatch_bytes_total", "Wire bytes of frames read (decoded ones).",
            MetricType::Counter, static_cast<double>(bytes));
  out.push_back(std::move(worker_packets));

  auto errors = Family("relaywatch_decode_errors_total",
                       "Malformed or truncated frames, by reason; each was skipped.",
                       MetricType::Counter);
  auto skipped = Family("relaywatch_packets_skipped_total",
                        "Valid frames not analysed (non-IP, fragments, ...), by reason.",
                        MetricType::Counter);
  for (std::size_t r = 0; r < decode::kDecodeReasonCount; ++r) {
    const auto reason = static_cast<decode::DecodeReason>(r);
    Add(decode::IsDecodeError(reason) ? errors : skipped,
        {{"reason", std::string(decode::DecodeReasonName(reason))}}, static_cast<double>(reasons[r]));
  }
  out.push_back(std::move(errors));
  out.push_back(std::move(skipped));
  AddSingle(out, "relaywatch_tunnelled_packets_total",
            "Packets decoded from inside GRE, IP-in-IP, VXLAN or Geneve.", MetricType::Counter,
            static_cast<double>(tunnelled));

  auto received = Family("relaywatch_capture_received_packets_total",
                         "Packets that passed the capture filter (pcap_stats ps_recv).",
                         MetricType::Counter);
  auto dropped = Family("relaywatch_capture_dropped_packets_total",
                        "Packets dropped because the capture ring was full (ps_drop).",
                        MetricType::Counter);
  auto ifdropped = Family("relaywatch_capture_interface_dropped_packets_total",
                          "Packets dropped by the interface or driver (ps_ifdrop).",
                          MetricType::Counter);
  std::map<std::string, std::array<std::uint64_t, 3>> per_interface;
  for (const auto& lw : live_) {
    for (std::size_t k = 0; k < lw->stats.size(); ++k) {
      auto& agg = per_interface[lw->interfaces[k]];
      for (int j = 0; j < 3; ++j) {
        agg[j] += lw->stats[k][j].load();
      }
    }
  }
  for (const auto& [iface, v] : per_interface) {
    Add(received, {{"interface", iface}}, static_cast<double>(v[0]));
    Add(dropped, {{"interface", iface}}, static_cast<double>(v[1]));
    Add(ifdropped, {{"interface", iface}}, static_cast<double>(v[2]));
  }
  out.push_back(std::move(received));
  out.push_back(std::move(dropped));
  out.push_back(std::move(ifdropped));
  auto up = Family("relaywatch_capture_up",
                   "1 while every capture handle on the interface reads packets; 0 once one "
                   "lost it (the interface went away or down) until it is open again.",
                   MetricType::Gauge);
  std::map<std::string, bool> interface_up;
  for (const auto& lw : live_) {
    for (std::size_t k = 0; k < lw->up.size(); ++k) {
      bool& is_up = interface_up.emplace(lw->interfaces[k], true).first->second;
      is_up = is_up && lw->up[k].load();
    }
  }
  for (const auto& [iface, is_up] : interface_up) {
    Add(up, {{"interface", iface}}, is_up ? 1.0 : 0.0);
  }
  out.push_back(std::move(up));
  auto offload = Family("relaywatch_capture_receive_offload",
                        "1 when the interface merges a flow's segments before the capture "
                        "(offload: gro, lro), as read when it was opened.",
                        MetricType::Gauge);
  std::map<std::string, int> interface_offloads;
  for (const auto& lw : live_) {
    for (std::size_t k = 0; k < lw->offloads.size(); ++k) {
      const int bits = lw->offloads[k].load();
      if (bits >= 0) {
        interface_offloads[lw->interfaces[k]] |= bits;
      }
    }
  }
  for (const auto& [iface, bits] : interface_offloads) {
    Add(offload, {{"interface", iface}, {"offload", "gro"}}, (bits & kOffloadGro) ? 1.0 : 0.0);
    Add(offload, {{"interface", iface}, {"offload", "lro"}}, (bits & kOffloadLro) ? 1.0 : 0.0);
  }
  out.push_back(std::move(offload));

  out.push_back(std::move(flows_active));
  AddSingle(out, "relaywatch_flows_created_total", "Flows created.", MetricType::Counter,
            static_cast<double>(created));
  AddByLabel(out, "relaywatch_flows_ended_total", "Flows ended by idle timeout or after FIN/RST.",
             MetricType::Counter, "reason",
             {{"timeout", static_cast<double>(expired)}, {"closed", static_cast<double>(closed)}});
  AddSingle(out, "relaywatch_flows_evicted_total",
            "Flows evicted because a flow table was full (raise flows.max_flows).",
            MetricType::Counter, static_cast<double>(evicted));
  AddSingle(out, "relaywatch_packets_duplicate_total",
            "Second copies of a packet (both sides of a router, a SPAN of both directions), "
            "passed to no detector (flows.duplicate_window).",
            MetricType::Counter, static_cast<double>(duplicates));

  AddDetectorCounters(out);

  const host::HostStageStats hs = host_->stats();
  auto sessions = Family("relaywatch_remote_sessions_total",
                         "Remote-access sessions identified, by app.", MetricType::Counter);
  for (const auto& [app, n] : hs.remote_sessions_by_app) {
    Add(sessions, {{"app", app}}, static_cast<double>(n));
  }
  out.push_back(std::move(sessions));
  auto alerts = Family("relaywatch_alerts_total", "Alerts published, by detector and severity.",
                       MetricType::Counter);
  for (const auto& [key, n] : hs.alerts) {
    Add(alerts, {{"detector", key.first}, {"severity", absl::StrCat(key.second)}},
        static_cast<double>(n));
  }
  out.push_back(std::move(alerts));
  AddByLabel(out, "relaywatch_alerts_suppressed_total",
             "Alerts not published: duplicates within the dedup window, or over "
             "the per-host rate limit.",
             MetricType::Counter, "reason",
             {{"duplicate", static_cast<double>(hs.suppressed_duplicate)},
              {"rate_limit", static_cast<double>(hs.suppressed_rate_limited)},
              {"allowed", static_cast<double>(hs.suppressed_allowed)}});
  // By rank, never by address: an address in a label is unbounded cardinality and personal
  // data in the time-series store; which host holds a rank is in its risk_score alert.
  auto scores = Family("relaywatch_host_score",
                       "Risk score (0..1) of the N-th highest-scoring host "
                       "(scoring.top_hosts ranks).",
                       MetricType::Gauge);
  for (std::size_t i = 0; i < hs.top_scores.size(); ++i) {
    Add(scores, {{"rank", absl::StrCat(i + 1)}}, hs.top_scores[i].second);
  }
  out.push_back(std::move(scores));
  AddSingle(out, "relaywatch_hosts_above_score_threshold",
            "Hosts whose risk score is at or above scoring.alert_threshold.", MetricType::Gauge,
            static_cast<double>(hs.hosts_above_threshold));
  AddSingle(out, "relaywatch_host_table_entries", "Hosts tracked by the host stage.",
            MetricType::Gauge, static_cast<double>(hs.hosts_tracked));
  AddSingle(out, "relaywatch_host_table_evictions_total",
            "Hosts forgotten because the host table was full.", MetricType::Counter,
            static_cast<double>(hs.hosts_evicted));
  AddSingle(out, "relaywatch_work_profiles",
            "Work-hours profiles kept (inventory hosts with a time zone).", MetricType::Gauge,
            static_cast<double>(hs.work_profiles));
  AddSingle(out, "relaywatch_work_profile_evictions_total",
            "Work-hours profiles forgotten because the table was full "
            "(alerting.max_hosts).",
            MetricType::Counter, static_cast<double>(hs.work_profiles_evicted));
  AddSingle(out, "relaywatch_typing_profiles",
            "Typing baselines kept (home hosts with timed SSH reactions).", MetricType::Gauge,
            static_cast<double>(hs.typing_profiles));
  AddSingle(out, "relaywatch_typing_profile_evictions_total",
            "Typing baselines forgotten because the table was full "
            "(alerting.max_hosts).",
            MetricType::Counter, static_cast<double>(hs.typing_profiles_evicted));
  AddSingle(out, "relaywatch_stepping_stone_cross_host_flows",
            "Flows kept for stepping stones across hosts (sessions from outside to a home "
            "host, SSH flows out of the others).",
            MetricType::Gauge, static_cast<double>(hs.cross_host_flows));
  AddSingle(out, "relaywatch_stepping_stone_cross_host_flow_evictions_total",
            "Flows kept for stepping stones across hosts forgotten because the table, or their "
            "host's share of it, was full.",
            MetricType::Counter, static_cast<double>(hs.cross_host_flows_evicted));
  AddSingle(out, "relaywatch_relay_turnarounds_explained_total",
            "Hidden-leg turnarounds not counted: the host's request on another "
            "connection was answered just before (a revocation, AIA or CRL fetch).",
            MetricType::Counter, static_cast<double>(hs.turnarounds_explained));
  AddSingle(out, "relaywatch_relay_hidden_leg_exempt_flows_total",
            "Measured flows to detectors.relay.hidden_leg_exempt_servers, logged but not "
            "counted toward a host's hidden leg.",
            MetricType::Counter, static_cast<double>(hs.hidden_leg_exempt_flows));
  AddSingle(out, "relaywatch_relay_hidden_leg_slow_openings_total",
            "Hidden-leg decisions not taken because the host's far clients waited several "
            "of their own answers to open (detectors.relay.hidden_leg_max_opening_ratio).",
            MetricType::Counter, static_cast<double>(hs.hidden_leg_slow_openings));
  AddByLabel(out, "relaywatch_relay_late_sessions_total",
             "Relay records of flows that went on after them, kept for a remote "
             "session named later: paired with one (its controller's round trip), "
             "or forgotten because their table (4096) was full.",
             MetricType::Counter, "outcome",
             {{"paired", static_cast<double>(hs.late_sessions_paired)},
              {"evicted", static_cast<double>(hs.late_records_evicted)}});
  AddSingle(out, "relaywatch_relay_fetch_evictions_total",
            "Exchanges forgotten as possible fetches because the host's list (128) "
            "was full.",
            MetricType::Counter, static_cast<double>(hs.fetches_evicted));
  AddByLabel(out, "relaywatch_nested_tunnel_decisions_total",
             "Company-VPN sessions whose SYN MSS implied a tunnel: nested, an MSS "
             "clamp, or forgotten undecided (table full).",
             MetricType::Counter, "outcome",
             {{"nested", static_cast<double>(hs.nesting_nested)},
              {"clamp", static_cast<double>(hs.nesting_clamp)},
              {"undecided_evicted", static_cast<double>(hs.nesting_undecided_evicted)}});
  AddSingle(out, "relaywatch_path_evidence_evictions_total",
            "Devices whose path-MTU evidence was forgotten because its table was "
            "full.",
            MetricType::Counter, static_cast<double>(hs.path_devices_evicted));
  AddByLabel(out, "relaywatch_flow_shape_named_flows_total",
             "Named remote sessions and the flow_shape findings about their flows: "
             "unknown_remote_control dropped (a named tool's flow, or a DNS "
             "transport's), direction filled in, or the session forgotten because "
             "its table was full.",
             MetricType::Counter, "outcome",
             {{"shape_suppressed", static_cast<double>(hs.shape_suppressed_named)},
              {"shape_suppressed_dns", static_cast<double>(hs.shape_suppressed_dns)},
              {"direction_filled", static_cast<double>(hs.shape_directions_filled)},
              {"evicted", static_cast<double>(hs.named_flows_evicted)}});

  AddByLabel(out, "relaywatch_records_dropped_total",
             "Records (never alerts) shed under back-pressure.", MetricType::Counter, "reason",
             {{"queue_full", static_cast<double>(output_->dropped() + findings_dropped_.load())}});
  AddSingle(out, "relaywatch_output_queue_events", "Events waiting for the sinks.",
            MetricType::Gauge, static_cast<double>(output_->queued()));

  auto written = Family("relaywatch_output_events_total", "Events written, by output.",
                        MetricType::Counter);
  auto out_dropped = Family("relaywatch_output_dropped_events_total",
                            "Events an output could not deliver, by output.",
                            MetricType::Counter);
  auto out_pending = Family("relaywatch_output_pending_events",
                            "Events an output holds because its file or collector cannot "
                            "take them now, by output.",
                            MetricType::Gauge);
  auto out_errors = Family("relaywatch_output_errors_total",
                           "Failed writes (jsonl) and failed connections or sends (syslog), "
                           "by output.",
                           MetricType::Counter);
  for (const auto& sink : output_->sinks()) {
    if (const auto* j = dynamic_cast<const sinks::JsonlSink*>(sink.get())) {
      Add(written, {{"output", "jsonl"}}, static_cast<double>(j->written()));
      Add(out_dropped, {{"output", "jsonl"}}, static_cast<double>(j->dropped()));
      Add(out_pending, {{"output", "jsonl"}}, static_cast<double>(j->pending()));
      Add(out_errors, {{"output", "jsonl"}}, static_cast<double>(j->write_errors()));
    } else if (const auto* s = dynamic_cast<const sinks::SyslogSink*>(sink.get())) {
      Add(written, {{"output", "syslog"}}, static_cast<double>(s->sent()));
      Add(out_dropped, {{"output", "syslog"}}, static_cast<double>(s->dropped()));
      Add(out_pending, {{"output", "syslog"}}, static_cast<double>(s->pending()));
      Add(out_errors, {{"output", "syslog"}},
          static_cast<double>(s->connect_failures() + s->send_errors()));
    }
  }
  out.push_back(std::move(written));
  out.push_back(std::move(out_dropped));
  out.push_back(std::move(out_pending));
  out.push_back(std::move(out_errors));

  AddByLabel(out, "relaywatch_config_reloads_total", "Configuration reloads, by result.",
             MetricType::Counter, "result",
             {{"success", static_cast<double>(reloads_ok_.load())},
              {"failure", static_cast<double>(reloads_failed_.load())}});
  return out;
}

}  // namespace relaywatch::daemon
