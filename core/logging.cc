#include "core/logging.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace mambaserve {
namespace {

LogSeverity LevelFromEnv() {
  const char* v = std::getenv("MAMBASERVE_LOG_LEVEL");
  if (v == nullptr) return LogSeverity::kInfo;
  const std::string s(v);
  if (s == "debug") return LogSeverity::kDebug;
  if (s == "warning") return LogSeverity::kWarning;
  if (s == "error") return LogSeverity::kError;
  return LogSeverity::kInfo;
}

std::atomic<int> g_min_level{static_cast<int>(LevelFromEnv())};
std::atomic<int> g_rank{-1};

}  // namespace

void SetMinLogLevel(LogSeverity level) { g_min_level = static_cast<int>(level); }
LogSeverity MinLogLevel() { return static_cast<LogSeverity>(g_min_level.load()); }
void SetLogRank(int rank) { g_rank = rank; }

LogMessage::LogMessage(LogSeverity severity, const char* file, int line) : severity_(severity) {
  static constexpr char kLetters[] = "DIWEF";
  const char* base = std::strrchr(file, '/');
  stream_ << kLetters[static_cast<int>(severity)]
          << absl::FormatTime("%m%d %H:%M:%E3S", absl::Now(), absl::LocalTimeZone());
  if (g_rank >= 0) stream_ << " [rank " << g_rank << "]";
  stream_ << " " << (base ? base + 1 : file) << ":" << line << "] ";
}

LogMessage::~LogMessage() {
  stream_ << '\n';
  const std::string s = stream_.str();
  std::fwrite(s.data(), 1, s.size(), stderr);
  if (severity_ == LogSeverity::kFatal) {
    std::fflush(stderr);
    std::abort();
  }
}

}  // namespace mambaserve
