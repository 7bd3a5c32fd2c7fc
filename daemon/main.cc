// relaywatch: finds laptops operated from far away through remote-desktop tools, IP-KVMs
// and relays. This file holds flags, wiring and exit codes; nothing else.

#include <getopt.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <thread>
#include <utility>  // before boost/asio.hpp: Boost 1.74 + gcc 12 in C++20
#include <variant>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <boost/asio.hpp>
#include <systemd/sd-daemon.h>

#include "capture/pcap_source.h"
#include "daemon/config.h"
#include "daemon/log.h"
#include "daemon/pipeline.h"
#include "daemon/sinks/prometheus_sink.h"

namespace relaywatch::daemon {
namespace {

constexpr char kUsage[] =
    "Usage: relaywatch [-c FILE] [-i IFACE]... [-r FILE]... [-T] [--jsonl PATH|-]\n"
    "                  [--metrics-listen ADDR:PORT] [--metrics-file PATH] [--workers N]\n"
    "                  [--version] [--help]\n"
    "\n"
    "Finds hosts operated remotely through remote-desktop tools, IP-KVMs and relays.\n"
    "\n"
    "  -c FILE                   YAML config (default: built-in defaults; see\n"
    "                            conf/relaywatch.yaml for every key)\n"
    "  -i IFACE                  capture on IFACE (repeatable; default: capture.interfaces,\n"
    "                            else the default-route interface)\n"
    "  -r FILE                   replay a pcap/pcapng file instead (repeatable, in order);\n"
    "                            exits when done\n"
    "  -T                        check the config and exit (0 = valid)\n"
    "  --jsonl PATH|-            write JSON-lines events to PATH, '-' = stdout\n"
    "  --metrics-listen ADDR:PORT  serve Prometheus metrics there (live default:\n"
    "                            outputs.prometheus.listen)\n"
    "  --metrics-file PATH       write the final Prometheus exposition to PATH on exit\n"
    "  --workers N               packet workers (default: one per core; 1 in replay)\n"
    "  --version                 print the version and exit\n"
    "  --help                    print this help and exit\n";

struct Flags {
  std::string config_path;
  std::vector<std::string> interfaces;
  std::vector<std::string> replay;
  bool test_config = false;
  std::optional<std::string> jsonl;
  std::optional<std::string> metrics_listen;
  std::string metrics_file;
  int workers = 0;
};

enum LongOption { kJsonl = 1000, kMetricsListen, kMetricsFile, kWorkers, kVersion, kHelp };

// Returns the flags, or an exit code (0 after --help/--version, 2 on a usage error).
std::variant<Flags, int> ParseFlags(int argc, char** argv) {
  static const option kOptions[] = {
      {"jsonl", required_argument, nullptr, kJsonl},
      {"metrics-listen", required_argument, nullptr, kMetricsListen},
      {"metrics-file", required_argument, nullptr, kMetricsFile},
      {"workers", required_argument, nullptr, kWorkers},
      {"version", no_argument, nullptr, kVersion},
      {"help", no_argument, nullptr, kHelp},
      {nullptr, 0, nullptr, 0},
  };
  Flags flags;
  int c;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":c:i:r:T", kOptions, nullptr)) != -1) {
    switch (c) {
      case 'c':
        flags.config_path = optarg;
        break;
      case 'i':
        flags.interfaces.emplace_back(optarg);
        break;
      case 'r':
        flags.replay.emplace_back(optarg);
        break;
      case 'T':
        flags.test_config = true;
        break;
      case kJsonl:
        flags.jsonl = optarg;
        break;
      case kMetricsListen:
        flags.metrics_listen = optarg;
        break;
      case kMetricsFile:
        flags.metrics_file = optarg;
        break;
      case kWorkers:
        if (!absl::SimpleAtoi(optarg, &flags.workers) || flags.workers < 1 ||
            flags.workers > 64) {
          std::fprintf(stderr, "relaywatch: --workers: expected 1..64, got \"%s\"\n", optarg);
          return 2;
        }
        break;
      case kVersion:
        std::printf("relaywatch %s (%s)\n", RELAYWATCH_VERSION, pcap_lib_version());
        return 0;
      case kHelp:
        std::fputs(kUsage, stdout);
        return 0;
      case ':':
        std::fprintf(stderr, "relaywatch: option %s needs a value\n%s", argv[optind - 1],
                     kUsage);
        return 2;
      default:
        std::fprintf(stderr, "relaywatch: unknown option %s\n%s", argv[optind - 1], kUsage);
        return 2;
    }
  }
  if (optind < argc) {
    std::fprintf(stderr, "relaywatch: unexpected argument \"%s\"\n%s", argv[optind], kUsage);
    return 2;
  }
  return flags;
}

// Loads the config file (or defaults) and applies the command line on top.
absl::StatusOr<Config> BuildConfig(const Flags& flags) {
  absl::StatusOr<Config> config = LoadConfig(flags.config_path);
  if (!config.ok()) {
    return config;
  }
  if (flags.jsonl) {
    config->jsonl_enabled = true;
    config->jsonl.path = *flags.jsonl;
  }
  if (flags.metrics_listen) {
    config->prometheus.enabled = true;
    config->prometheus.listen = *flags.metrics_listen;
  }
  if (flags.workers > 0) {
    config->capture.workers = flags.workers;
  }
  return config;
}

void Notify(const std::string& message) { sd_notify(0, message.c_str()); }

int Run(const Flags& flags) {
  absl::StatusOr<Config> config = BuildConfig(flags);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  if (flags.test_config) {
    std::printf("%s: configuration OK\n", config->source.c_str());
    return 0;
  }
  const bool replay = !flags.replay.empty();
  // Replay is bound by its one reader thread (measured in tests/bench: a second worker only
  // adds copying), and its output is the same for any worker count: one worker unless asked.
  const int workers = config->capture.workers > 0 ? config->capture.workers
                      : replay ? 1
                               : static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
  absl::StatusOr<std::unique_ptr<Pipeline>> pipeline = Pipeline::Create(*config, workers);
  if (!pipeline.ok()) {
    RW_LOG(kError, "%s", pipeline.status().message());
    return 1;
  }
  Pipeline& p = **pipeline;

  // In replay the listener is opt-in (--metrics-listen), so offline runs bind no port.
  std::unique_ptr<sinks::PrometheusSink> metrics;
  if (config->prometheus.enabled && (!replay || flags.metrics_listen)) {
    auto started = sinks::PrometheusSink::Start(config->prometheus.listen,
                                                [&p] { return p.CollectMetrics(); });
    if (!started.ok()) {
      RW_LOG(kError, "%s", started.status().message());
      return 1;
    }
    metrics = std::move(*started);
    RW_LOG(kInfo, "metrics on http://%s/metrics", config->prometheus.listen);
  }

  boost::asio::io_context io;
  boost::asio::signal_set stop_signals(io, SIGTERM, SIGINT);
  boost::asio::signal_set reload_signal(io, SIGHUP);
  absl::Status result = absl::OkStatus();
  std::thread replay_thread;

  stop_signals.async_wait([&](boost::system::error_code ec, int signal) {
    if (ec) {
      return;
    }
    RW_LOG(kNotice, "%s received: stopping, flushing outputs", strsignal(signal));
    Notify("STOPPING=1");
    p.Interrupt();
    if (!replay) {
      io.stop();
    }
  });
  std::function<void()> await_reload = [&] {
    reload_signal.async_wait([&](boost::system::error_code ec, int) {
      if (ec) {
        return;
      }
      Notify("RELOADING=1\nSTATUS=reloading configuration");
      absl::StatusOr<Config> fresh = BuildConfig(flags);
      if (fresh.ok()) {
        p.Reload(*fresh);
        RW_LOG(kNotice, "configuration reloaded from %s; outputs reopened", fresh->source);
        Notify("READY=1\nSTATUS=" + p.StatusLine());
      } else {
        p.CountFailedReload();
        RW_LOG(kError, "reload failed, keeping the running configuration: %s",
               fresh.status().message());
        Notify(absl::StrCat("READY=1\nSTATUS=reload failed: ", fresh.status().message()));
      }
      await_reload();
    });
  };
  await_reload();

  const bool show_progress = replay && isatty(STDERR_FILENO);
  boost::asio::steady_timer timer(io);
  std::uint64_t watchdog_usec = 0;
  const bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0;
  std::function<void()> tick = [&] {
    timer.expires_after(std::chrono::milliseconds(500));
    timer.async_wait([&](boost::system::error_code ec) {
      if (ec) {
        return;
      }
      if (show_progress) {
        const auto [file, fraction] = p.progress();
        std::fprintf(stderr, "\rrelaywatch: file %d/%zu %3.0f%%  %llu packets   ", file,
                     flags.replay.size(), 100 * fraction,
                     static_cast<unsigned long long>(p.packets_read()));
      }
      // Ping the watchdog only when the workers themselves are alive.
      if (watchdog && p.Healthy()) {
        Notify("WATCHDOG=1");
      }
      tick();
    });
  };
  tick();

  if (replay) {
    replay_thread = std::thread([&] {
      result = p.Replay(flags.replay);
      boost::asio::post(io, [&] { io.stop(); });
    });
  } else {
    std::vector<std::string> interfaces = flags.interfaces;
    if (interfaces.empty()) {
      interfaces = config->capture.interfaces;
    }
    if (interfaces.empty()) {
      absl::StatusOr<std::string> route = capture::DefaultRouteInterface();
      if (!route.ok()) {
        RW_LOG(kError, "%s", route.status().message());
        return 1;
      }
      interfaces.push_back(*route);
    }
    if (absl::Status s = p.StartLive(interfaces); !s.ok()) {
      RW_LOG(kError, "%s", s.message());
      p.Stop();
      return 1;
    }
    RW_LOG(kNotice, "capturing on %s with %d workers", absl::StrJoin(interfaces, ","), workers);
    Notify("READY=1\nSTATUS=" + p.StatusLine());
  }
  io.run();
  if (replay_thread.joinable()) {
    replay_thread.join();
  }
  p.Stop();
  if (show_progress) {
    std::fputs("\n", stderr);
  }
  // A replay whose output lost events did not do its job, whatever it read.
  const auto undelivered = p.Undelivered();
  for (const auto& [output, count] : undelivered) {
    RW_LOG(kError, "%s output: %u events were not delivered (dropped, or still held at exit)",
           output, count);
  }
  if (!flags.metrics_file.empty()) {
    if (absl::Status s = sinks::WriteMetricsFile(flags.metrics_file, p.CollectMetrics());
        !s.ok()) {
      RW_LOG(kError, "%s", s.message());
      return 1;
    }
  }
  if (!result.ok()) {
    RW_LOG(kError, "%s", result.message());
    return 1;
  }
  return replay && !undelivered.empty() ? 1 : 0;
}

}  // namespace
}  // namespace relaywatch::daemon

int main(int argc, char** argv) {
  auto flags = relaywatch::daemon::ParseFlags(argc, argv);
  if (const int* code = std::get_if<int>(&flags)) {
    return *code;
  }
  // A file size limit (ulimit -f, LimitFSIZE=) must refuse a write with EFBIG, which the
  // JSON-lines output holds and counts, not kill the sensor.
  std::signal(SIGXFSZ, SIG_IGN);
  return relaywatch::daemon::Run(std::get<relaywatch::daemon::Flags>(flags));
}
