#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"
#include "prometheus/metric_family.h"

namespace relaywatch::sinks {

// Builds the metric families at scrape time from the pipeline's counters, so workers never
// touch prometheus objects: they bump relaxed atomics that this callback reads.
using MetricsCallback = std::function<std::vector<prometheus::MetricFamily>()>;

class CallbackCollectable : public prometheus::Collectable {
 public:
  explicit CallbackCollectable(MetricsCallback callback) : callback_(std::move(callback)) {}
  std::vector<prometheus::MetricFamily> Collect() const override { return callback_(); }

 private:
  MetricsCallback callback_;
};

// Serves /metrics over HTTP (prometheus-cpp's civetweb exposer).
class PrometheusSink {
 public:
  // `listen` is "ADDRESS:PORT" ("127.0.0.1:0" picks a free port, see port()).
  static absl::StatusOr<std::unique_ptr<PrometheusSink>> Start(const std::string& listen,
                                                               MetricsCallback callback);
  int port() const;

 private:
  PrometheusSink() = default;
  std::shared_ptr<CallbackCollectable> collectable_;  // the exposer holds only a weak_ptr
  std::unique_ptr<prometheus::Exposer> exposer_;
};

// The Prometheus text exposition of `families`.
std::string SerializeMetrics(const std::vector<prometheus::MetricFamily>& families);

// Writes the exposition to `path` atomically (temp file + rename), for offline runs.
absl::Status WriteMetricsFile(const std::string& path,
                              const std::vector<prometheus::MetricFamily>& families);

}  // namespace relaywatch::sinks
