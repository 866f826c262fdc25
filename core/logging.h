// Minimal leveled logging to stderr. Debian's Abseil (20220623) predates absl/log, so this
// provides the same shape: MS_LOG(INFO) << "text"; lines carry time, level, rank and place.
#ifndef MAMBASERVE_CORE_LOGGING_H_
#define MAMBASERVE_CORE_LOGGING_H_

#include <sstream>

namespace mambaserve {

enum class LogSeverity { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kFatal = 4 };

// Messages below this level are dropped (default kInfo; MAMBASERVE_LOG_LEVEL=debug|info|...).
void SetMinLogLevel(LogSeverity level);
LogSeverity MinLogLevel();
// Prefixes every line with "[rank r]" once MPI is up (-1 leaves it out).
void SetLogRank(int rank);

class LogMessage {
 public:
  LogMessage(LogSeverity severity, const char* file, int line);
  ~LogMessage();  // writes the line; kFatal then aborts
  std::ostream& stream() { return stream_; }

 private:
  LogSeverity severity_;
  std::ostringstream stream_;
};

}  // namespace mambaserve

#define MS_LOG_SEVERITY_DEBUG ::mambaserve::LogSeverity::kDebug
#define MS_LOG_SEVERITY_INFO ::mambaserve::LogSeverity::kInfo
#define MS_LOG_SEVERITY_WARNING ::mambaserve::LogSeverity::kWarning
#define MS_LOG_SEVERITY_ERROR ::mambaserve::LogSeverity::kError
#define MS_LOG_SEVERITY_FATAL ::mambaserve::LogSeverity::kFatal

#define MS_LOG(level)                                          \
  if (MS_LOG_SEVERITY_##level < ::mambaserve::MinLogLevel()) { \
  } else                                                       \
    ::mambaserve::LogMessage(MS_LOG_SEVERITY_##level, __FILE__, __LINE__).stream()

#endif  // MAMBASERVE_CORE_LOGGING_H_
