"""A training run's life, one job a module: what `rnnlab.train.train` leans on.

    plan.py         which run a command is: new, resumed, or finished before (the rules below)
    owners.py       the process that owns a run, and ending the runs whose process died
    ranks.py        one plan for every DDP rank under torchrun or srun
    checkpoints.py  where checkpoints live, written atomically; last.ckpt for an identical continuation
    signals.py      stopping on SIGTERM / SIGINT / SIGUSR1 at a batch boundary, SLURM requeue
    tags.py         the names of the tags a run records about itself
    logger.py       the MLflow logger the trainer writes metrics through
    provenance.py   code, data, versions and device; the resolved config as params
    record.py       the run's record in MLflow and its final status (RunRecord)
    naming.py       debug runs kept apart (`<experiment>-debug`); a run's description (its overrides)
    sweep.py        the parent run of a Hydra multirun, created once across the sweep's processes
    system_metrics.py  MLflow's CPU/memory/disk/network (GPU) sampler on the run
    progress.py     a log line per epoch; the progress bar, in a terminal only
    export.py       the DVC stage's outputs
    history.py      per-step metrics read back from the store; result.py what train() returns
    timing.py       training time and throughput; cpu.py process-wide CPU settings; curves.py the learning curves

Conventions (README "Reliability"):

- `resume` (conf/config.yaml) says which run a command continues:
  - `auto` (the default): the latest run of the experiment with the same *run key* decides. Stopped before its end
    (KILLED by a signal or Ctrl-C, or its process died: left RUNNING, or FAILED "died" by the sweep below), or
    trained but not recorded (FAILED "not recorded": its record failed at the end, `record.RecordFailed`), it
    continues from its last completed epoch. FINISHED, with `export_dir` set (a DVC stage, whose outputs
    `dvc repro` deletes before rerunning it), it is not trained again: its export is written again from the store.
    Otherwise (none, FINISHED without export_dir, FAILED with an error, or still running): a new run.
  - `never`: a new run.
  - `<run id>`: that run, which must have the same key, not be FINISHED, not have failed with an error, and not
    be running in a live process of this host (on another host its owner cannot be checked: naming it says the
    owner is gone).
- The run key (tag `rnnlab.run_key`, `rnnlab.identity.run_key`) is a sha256 over what decides a run's results: the
  resolved `seed`, `data`, `model`, `trainer`, `callbacks` (progress display left out), `test`, `export_dir` and
  experiment name, the prepared data's sha256 and the rnnlab code's (`run.provenance.code_hash`). Change any of them
  and the command is a new run.
- Checkpoints: `<checkpoint dir>/<run id>/` holds `best.ckpt` (the configured ModelCheckpoint) and `last.ckpt`,
  written at the end of every training epoch (`LastCheckpoint`). Both are written to a temporary file and renamed
  into place (`AtomicCheckpointIO`), so a kill leaves the previous one whole. The checkpoint dir is
  `paths.checkpoint_dir`, or by default `checkpoints/` beside a sqlite store (in the working directory for a
  server; for several machines, point it at a shared file system). A run's folder goes when it ends FINISHED (its
  best checkpoint is in MLflow by then) or FAILED with an error; a stopped run, or one not recorded, keeps it until
  it is resumed. A `last.ckpt` that cannot restore the model (truncated, overwritten, empty, another model's
  weights, an optimizer state that does not fit the model's optimizer) is
  refused before the run is claimed, in one line naming the file: the run stays as it was (KILLED, or FAILED
  "died"), both checkpoints stay, and it resumes once a good copy is back; `resume=never` starts a new run. It
  is not trained over from its start, which would log its finished epochs' metrics twice.
- Owners: a run records its process (tags `rnnlab.host`, `rnnlab.pid`, `rnnlab.pid_started`; under SLURM also
  `rnnlab.slurm_job`, the job id and restart count, and in a job array `rnnlab.slurm_array_task`,
  <array>_<task>). Every train start ends the RUNNING runs whose process is gone (this host's, or an earlier
  incarnation of this SLURM job) FAILED with `rnnlab.end_reason` "died: ...".
- Signals: SIGTERM (schedulers, `docker stop`), SIGINT (Ctrl-C) and SIGUSR1 (SLURM's pre-emption warning) stop
  the run at the next batch boundary (at once outside training): it ends KILLED (`rnnlab.end_reason` "signal
  SIGTERM"), its checkpoints kept, and the process exits with status 128 + the signal's number (143, 130, 138).
  Under SLURM with Lightning's auto-requeue (its default), SIGUSR1 also requeues the job with `scontrol requeue`, as Lightning would; the requeued job runs the same
  command, which resumes. A tracking server that stops answering ends the command after a bounded wait
  (`tracking.TRAINING_HTTP`) with one line, `StoreUnreachable`: the run stays RUNNING in the store (nothing can
  end it there), its checkpoints kept, and the printed line says so even when a signal stopped it; a server that
  does not answer while the run is chosen is one line after one quick retry (`tracking.QUICK_HTTP`). A stopped
  epoch is trained again on resume: epoch ends are the points a run resumes from exactly.
"""
