"""Code that runs inside each training rank: step boundaries, data-loader wait, DDP communication,
torch.profiler windows and workload facts. Loaded by the bootstrap that ``ddlprof wrap`` puts on
PYTHONPATH; everything here catches its own errors, warns once and switches itself off."""
