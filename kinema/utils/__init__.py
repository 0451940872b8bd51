"""Small shared helpers: atomic file writes, seeding, dataclass <-> JSON."""

from kinema.utils.fs import atomic_dir, atomic_file
from kinema.utils.seed import seed_everything

__all__ = ["atomic_dir", "atomic_file", "seed_everything"]
