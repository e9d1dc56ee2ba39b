// cuda_fp16.h (emulation): see cuda_runtime.h beside it.
#pragma once
#include "cuda_runtime.h"
