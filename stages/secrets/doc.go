// Package secrets finds and redacts credentials in text: Anthropic, OpenAI,
// GitHub, AWS and Google keys, bearer tokens, JWTs, PEM private keys,
// passwords in URLs and KEY=value secrets, and optionally e-mail addresses
// and the user names in home-directory paths.
//
// It is not a stage kind but a library shared by kinds: claude_logs
// redacts with it before writing anything, and quality uses Scan as a gate
// that drops records still holding a secret. It imports nothing of the
// stage API, so importing it does not couple one kind to another.
//
// Findings carry a kind and byte offsets only, never the secret text, so
// that reports and logs built from them cannot leak what they found.
package secrets
