"""The test suite. Importing this package (before any conftest or test module) sets one BLAS and OpenMP thread
per process, before numpy is first imported: the suite's models are small, and on 2 cores a second thread per
process only spins against the other test worker and the endpoint servers (15% less CPU for a module of
in-process runs). Every process a test starts inherits it; a value set in the environment is kept."""
import os

for _pool in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_pool, "1")
