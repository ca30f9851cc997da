import os

# Keep the tests on the CPU and off any accelerator a developer machine may have.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
