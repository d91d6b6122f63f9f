"""Model diagnostics: does each CLASP module do what it claims, measured on the model's own outputs.

For a trained checkpoint and an evaluation split (validation/test ground truth; never the training
split), every step of every video is put in one of three categories from the annotations and, for
the semi-synthetic data, from the generator's own record of where it drew modality-only
distractors (regenerated from the manifest's ``synth`` parameters and checked bit-for-bit against
the shard features in their stored dtype, so a mismatch disables the distractor figures instead of reporting wrong ones):

* ``event``: inside a ground-truth segment;
* ``distractor``: inside a one-stream presence (off-screen sound, silent object, absent class) and
  not inside an event;
* ``background``: everything else.

Figures (all in [0, 1]; pooled over videos):

* **MEAE** (models with agreement): mean agreement s_t and anchor score alpha_t per category, and
  the ROC-AUC of each for event-vs-distractor and event-vs-background steps.
* **CSAI** (models with anchors): the fraction of anchors on events / distractors, the chance rate
  (fraction of steps that are events) and the fraction of ground-truth segments holding an anchor.
* **Localisation signal** sqrt(P_a P_v) of each ground-truth class, from the base heads and (with
  ATP) the refined heads: step-level AP of that class's event steps, the ROC-AUC of event-vs-same-
  class-distractor steps, the fraction of segments whose peak signal stays under the decoder's
  lowest threshold (a segment that can never be proposed), the mean fraction of a segment's steps at or
  above that threshold (completeness) and the fraction of the class's non-event steps above it (leak).
* **Video classification**: class-mean AP of the video score sqrt(p_a p_v), base and final heads.

Modules, one job each: ``stats`` (ranking statistics), ``truth`` (step categories of one video),
``distractors`` (the generator's distractor record, regenerated and checked), ``collector`` (pooling a
model's outputs into the figures), ``run`` (one checkpoint on one split, and its files), ``sweep``
(every finished trial of a sweep, averaged per arm).
"""
