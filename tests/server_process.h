// Starts `mpiexec -np N mambaserve ...` as a child process for end-to-end tests and stops it.
#ifndef MAMBASERVE_TESTS_SERVER_PROCESS_H_
#define MAMBASERVE_TESTS_SERVER_PROCESS_H_

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace mambaserve {

class ServerProcess {
 public:
  // Launches the server; returns false if the spawn failed.
  bool Start(int ranks, const std::vector<std::string>& server_args, const std::string& log) {
    std::vector<std::string> argv{MAMBASERVE_MPIEXEC,
                                  "-np",
                                  std::to_string(ranks),
                                  "--oversubscribe",
                                  "--allow-run-as-root",
                                  "--bind-to",
                                  "none",
                                  MAMBASERVE_SERVER_BINARY};
    argv.insert(argv.end(), server_args.begin(), server_args.end());
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    const int rc = posix_spawn(&pid_, cargv[0], &fa, nullptr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    return rc == 0;
  }

  // Sends `sig` and waits up to `timeout` for the exit; returns the exit status (or -1 on
  // timeout, after which the process is killed).
  int StopWith(int sig, std::chrono::seconds timeout) {
    if (pid_ <= 0) return -1;
    kill(pid_, sig);
    return Wait(timeout);
  }

  int Wait(std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      const pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = 0;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = 0;
    return -1;
  }

  // Pids of the launcher's direct children (the ranks).
  std::vector<pid_t> RankPids() const {
    std::vector<pid_t> pids;
    DIR* d = opendir("/proc");
    if (d == nullptr) return pids;
    while (dirent* e = readdir(d)) {
      const pid_t p = static_cast<pid_t>(std::atoi(e->d_name));
      if (p <= 0) continue;
      std::ifstream stat(std::string("/proc/") + e->d_name + "/stat");
      std::string comm_and_rest;
      std::getline(stat, comm_and_rest);
      // Fields after the ")" that closes the command name: state, ppid, ...
      const size_t close = comm_and_rest.rfind(')');
      if (close == std::string::npos) continue;
      char state;
      int ppid = 0;
      if (std::sscanf(comm_and_rest.c_str() + close + 1, " %c %d", &state, &ppid) == 2 &&
          ppid == pid_ && comm_and_rest.find("(mambaserve)") != std::string::npos) {
        pids.push_back(p);
      }
    }
    closedir(d);
    return pids;
  }

  pid_t pid() const { return pid_; }
  ~ServerProcess() {
    if (pid_ > 0) StopWith(SIGKILL, std::chrono::seconds(5));
  }

 private:
  pid_t pid_ = 0;
};

}  // namespace mambaserve

#endif  // MAMBASERVE_TESTS_SERVER_PROCESS_H_
