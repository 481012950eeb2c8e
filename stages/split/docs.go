package split

import "github.com/pipeml/pipe/stages"

var doc = `Merge record inputs and split them into train and eval by group

Reads any number of JSONL inputs (files, or folders walked for *.jsonl),
in path order, so the output does not depend on the order inputs are
listed in. A record without ` + "`meta.source`" + ` gets default_source, or the name of
its input (file or folder, without .jsonl). A line that is not a JSON
record is skipped and listed in the report with file and line.

**Duplicates.** Records whose normalised content (white space collapsed;
system prompt, tool signatures and meta ignored) equals an earlier one's
are dropped, across all sources; the first in input order stays.

**Groups.** A record's group is ` + "`meta.group`" + ` (a session id, a repository
file): the unit that must never straddle train and eval. Group names are
global across sources. A record without a group is its own group, named
by its content hash (` + "`content:<hex>`" + `), so identical content lands on the
same side whenever it appears.

**Near-duplicates.** Groups are tied into units that share a side when
two of their records are near-duplicates: records carrying the same
` + "`meta.near_dup_cluster`" + ` (written by ` + "`quality`" + ` with near_dup = "tag"), and,
unless near_dup = false, pairs found here with MinHash LSH (word 5-grams,
100 permutations, 20 bands of 5 rows, verified at near_dup_threshold).
This stage runs its own, cheaper MinHash because its inputs can come from
several quality runs (or none), and quality in drop mode keeps no cluster
information; 20 x 5 bands find a pair of Jaccard 0.7 with probability
0.97, where quality's 25 x 10 (tuned for dropping, not for leakage) find
0.51.

**Assignment.** Each group is hashed with the seed (BLAKE3 of seed and
group name, read as a number in [0, 1)); a unit takes the lowest hash of
its groups. Units are ordered by hash and eval is always a prefix of that
order: without bounds, the units whose hash is below eval_frac. So a
group's side depends only on its own hash, and when new data arrives,
existing groups keep their side; new groups fall on either side by their
own hash, and in expectation eval_frac of the records go to eval.

**min_eval and max_eval** move the end of the prefix instead of
reshuffling: with too few eval records the next units in hash order join
eval (never the last unit); with too many, the last eval units leave it.
Both bounds can only move the end of the prefix down as the data grows
(more records below any point of the hash range), so under growth an
existing group can move from eval to train when a bound applies, but never
from train to eval: nothing trained on becomes evaluation data. Two cases
move a group across: while min_eval cannot be met at all (every unit but
the last is in eval, so a new last unit lets the old one join eval), and
when new data ties two existing groups on different sides as
near-duplicates (the unit takes the lower hash, so the other group
follows it); the report counts merged units.

Outputs: ` + "`train`" + ` and ` + "`eval`" + ` (JSONL, input order) and ` + "`report`" + ` (JSON:
records and groups per source and side, duplicates, units, merged units,
the threshold and bound used, the largest units, malformed lines). The
output is byte-for-byte the same whatever the parallelism.

## Parameters

` + stages.ParamDoc(params)
