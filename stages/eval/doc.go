// Package eval is the `eval` stage kind: it adapts ml/eval (base model
// against LoRA adapters on the eval split) to the stage API. Like
// stages/train, it is one of the two stage packages allowed to import ml.
package eval
