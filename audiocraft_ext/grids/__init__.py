"""Dora grids (`dora -P audiocraft_ext grid vidmuse.<name>`): sweeps launched locally or on SLURM."""
