// dispatch.cpp — picks the kernel set for this CPU, once per process (part of the common code,
// compiled for baseline x86-64: it runs before anything knows what the CPU supports).
#include <cstdlib>
#include <cstring>

#include "kernel_table.h"

namespace convkern::cpu {
namespace {

enum Level { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };
constexpr const char* kLevelNames[] = {"generic", "avx2", "avx512"};

// The widest level whose every instruction this CPU (and its OS, which must save the wider
// registers) supports: each set is compiled with -march=x86-64-v3 / -v4, so a level needs all
// of that micro-architecture level's features, not only AVX2 or AVX512F.
Level cpu_level() {
#if defined(CONVKERN_X86_SETS)
  __builtin_cpu_init();
#if defined(__clang__) || __GNUC__ < 12
  // Compilers that cannot name the levels: their distinctive features (every CPU with these has
  // the rest of its level, e.g. MOVBE and LZCNT with AVX2 + BMI2).
  const bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi") &&
                  __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("popcnt");
  const bool v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
                  __builtin_cpu_supports("avx512vl");
#else
  const bool v3 = __builtin_cpu_supports("x86-64-v3");
  const bool v4 = v3 && __builtin_cpu_supports("x86-64-v4");
#endif
  return v4 ? kAvx512 : v3 ? kAvx2 : kGeneric;
#else
  return kGeneric;
#endif
}

const CpuKernels* table_for(Level level) {
#if defined(CONVKERN_X86_SETS)
  switch (level) {
    case kAvx512:
      return convkern_cpu_kernels_avx512();
    case kAvx2:
      return convkern_cpu_kernels_avx2();
    case kGeneric:
      break;
  }
#else
  (void)level;
#endif
  return convkern_cpu_kernels_generic();
}

struct Selection {
  IsaChoice choice;
  const CpuKernels* kernels;
};

// CONVKERN_ISA may only lower the level: asking for AVX-512 on a CPU without it gets the best the
// CPU has. An unknown value changes nothing here; the package warns about it at import.
Selection select() {
  const Level best = cpu_level();
  Level chosen = best;
  const char* want = std::getenv("CONVKERN_ISA");
  if (want && !*want) want = nullptr;
  bool known = want == nullptr;
  for (int level = kGeneric; want && level <= kAvx512; ++level)
    if (std::strcmp(want, kLevelNames[level]) == 0) {
      known = true;
      if (level < chosen) chosen = static_cast<Level>(level);
    }
  return {{kLevelNames[chosen], kLevelNames[best], want, known}, table_for(chosen)};
}

const Selection& selection() {
  static const Selection s = select();
  return s;
}

}  // namespace

const CpuKernels& cpu_kernels() { return *selection().kernels; }
const IsaChoice& isa_choice() { return selection().choice; }

}  // namespace convkern::cpu
