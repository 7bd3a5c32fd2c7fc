#include "daemon/sinks/prometheus_sink.h"

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "prometheus/text_serializer.h"

namespace relaywatch::sinks {

absl::StatusOr<std::unique_ptr<PrometheusSink>> PrometheusSink::Start(const std::string& listen,
                                                                      MetricsCallback callback) {
  std::unique_ptr<PrometheusSink> sink(new PrometheusSink());
  sink->collectable_ = std::make_shared<CallbackCollectable>(std::move(callback));
  try {
    sink->exposer_ = std::make_unique<prometheus::Exposer>(listen, /*num_threads=*/1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics listener ", listen, ": cannot listen: ", e.what()));
  }
  sink->exposer_->RegisterCollectable(sink->collectable_);
  return sink;
}

int PrometheusSink::port() const {
  const std::vector<int> ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

std::string SerializeMetrics(const std::vector<prometheus::MetricFamily>& families) {
  return prometheus::TextSerializer().Serialize(families);
}

absl::Status WriteMetricsFile(const std::string& path,
                              const std::vector<prometheus::MetricFamily>& families) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << SerializeMetrics(families);
    out.close();
    if (!out) {
      return absl::UnavailableError(absl::StrCat(temp, ": cannot write metrics file"));
    }
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat(path, ": cannot rename metrics file into place"));
  }
  return absl::OkStatus();
}

}  // namespace relaywatch::sinks
