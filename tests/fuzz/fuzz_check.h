#pragma once

// FUZZ_CHECK(condition): a target's own invariant. When it fails, the target
// prints it and aborts, which libFuzzer (and the replay driver) report as a
// crash with the input that caused it. Checked in every build type.
//
// FUZZ_LOG(format, ...): printed only when the environment variable
// EVENTBUS_FUZZ_VERBOSE is set, to see what each seed exercises, e.g.
//   EVENTBUS_FUZZ_VERBOSE=1 build/tests/fuzz/load_config_fuzzer \
//       tests/fuzz/corpus/load_config

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(condition)                                              \
  do {                                                                     \
    if (!(condition)) {                                                    \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__,     \
                   __LINE__, #condition);                                  \
      std::abort();                                                        \
    }                                                                      \
  } while (false)

inline bool FuzzVerbose() {
  static const bool verbose = std::getenv("EVENTBUS_FUZZ_VERBOSE") != nullptr;
  return verbose;
}

#define FUZZ_LOG(...)                                     \
  do {                                                    \
    if (FuzzVerbose()) std::fprintf(stderr, __VA_ARGS__); \
  } while (false)
