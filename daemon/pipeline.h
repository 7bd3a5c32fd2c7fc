#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "prometheus/metric_family.h"

#include "capture/decode/decode_counters.h"
#include "capture/pcap_source.h"
#include "daemon/config.h"
#include "daemon/output_stage.h"
#include "daemon/worker.h"
#include "detectors/host/host_stage.h"

namespace relaywatch::daemon {

// The running product: capture -> decode -> flows/detectors (N workers) -> host stage ->
// output stage -> sinks.
//
// Threads: live capture runs one thread per worker, each reading its own PACKET_FANOUT
// socket on every interface through a Boost.Asio io_context, plus one host-stage thread.
// Replay runs one reader thread that decodes, hashes flows to workers in batches and merges
// their findings in packet-time order, so output is identical for any worker count.
class Pipeline {
 public:
  static absl::StatusOr<std::unique_ptr<Pipeline>> Create(const Config& config, int workers);
  ~Pipeline();

  // Replays the files in order; returns when all are done and every output is flushed.
  // A file that cannot be read stops the replay with an error; what was found before it
  // is still delivered.
  absl::Status Replay(const std::vector<std::string>& files);
  // Opens every interface on every worker and starts the threads.
  absl::Status StartLive(const std::vector<std::string>& interfaces);
  // Stops capture, ends all flows, drains the host and output stages (SIGTERM).
  void Stop();
  // Applies a new validated config (SIGHUP): alerting, detectors, outputs reopened.
  void Reload(const Config& config);
  // Asks a running replay to stop early (SIGINT during -r).
  void Interrupt() { interrupted_.store(true); }

  std::vector<prometheus::MetricFamily> CollectMetrics() const;
  // Replay progress: file index (1-based) and fraction of it read.
  std::pair<int, double> progress() const { return {file_index_.load(), file_progress_.load()}; }
  std::uint64_t packets_read() const { return frames_.Read(); }
  // Live: true when every worker has run its loop within the last few seconds.
  bool Healthy() const;
  std::string StatusLine() const;
  // Outputs that did not deliver every event, with how many they dropped or still hold
  // (lost at exit); read after Stop().
  std::vector<std::pair<std::string, std::uint64_t>> Undelivered() const;

 private:
  Pipeline(const Config& config, int workers);
  struct LiveWorker;

  void PublishFindings(std::vector<Event> findings, bool wait);
  // False when the file stopped at damage (truncated, corrupt) before its end.
  bool ReplayFile(capture::PcapSource& source);
  void RunBatch();
  // Writes the host scores to scoring.state_file (if set) from the host stage's thread.
  void SaveScores();
  void HostLoop();
  void LiveLoop(LiveWorker& live);
  // Appends the detectors' own counters (Detector::ReportCounters), summed over workers.
  void AddDetectorCounters(std::vector<prometheus::MetricFamily>& out) const;

  Config config_;
  int worker_count_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<host::HostStage> host_;
  std::unique_ptr<OutputStage> output_;

  // Replay state (reader thread).
  decode::DecodeCounters reader_decode_;
  WorkerCounter frames_;
  WorkerCounter frame_bytes_;
  struct BatchItem {
    decode::DecodedPacket packet;
    std::uint32_t frame_offset = 0;
    std::uint32_t payload_offset = 0;
  };
  struct Batch {
    std::vector<std::uint8_t> bytes;
    std::vector<BatchItem> items;
  };
  std::vector<Batch> batches_;
  PacketTime batch_end_ = absl::InfinitePast();  // newest packet time replayed so far
  std::vector<std::thread> batch_threads_;
  absl::Mutex batch_mu_;
  std::uint64_t batch_generation_ ABSL_GUARDED_BY(batch_mu_) = 0;
  int batch_pending_ ABSL_GUARDED_BY(batch_mu_) = 0;
  bool batch_quit_ ABSL_GUARDED_BY(batch_mu_) = false;
  std::atomic<int> file_index_{0};
  std::atomic<double> file_progress_{0};
  std::atomic<bool> interrupted_{false};

  // Live state.
  std::vector<std::unique_ptr<LiveWorker>> live_;
  std::thread host_thread_;
  absl::Mutex host_mu_;
  std::deque<Event> host_queue_ ABSL_GUARDED_BY(host_mu_);
  bool host_stop_ ABSL_GUARDED_BY(host_mu_) = false;
  std::atomic<std::uint64_t> findings_dropped_{0};
  std::atomic<std::uint64_t> reloads_ok_{0};
  std::atomic<std::uint64_t> reloads_failed_{0};
  std::atomic<bool> live_started_{false};
  absl::Mutex reload_mu_;
  std::shared_ptr<const Config> pending_config_ ABSL_GUARDED_BY(reload_mu_);

 public:
  void CountFailedReload() { reloads_failed_.fetch_add(1); }
};

}  // namespace relaywatch::daemon
