package secrets

import (
	"strings"
	"testing"
)

// Fake credentials are assembled at run time so that no string in this
// file looks like a live secret to scanners.
func rep(s string, n int) string { return strings.Repeat(s, n) }

var (
	anthropicKey = "sk-ant-" + "api03-" + rep("Ab3_x-", 15)
	openAIProj   = "sk-" + "proj-" + rep("Q1w2E3r4", 6)
	openAILegacy = "sk-" + rep("Z9y8X7w6", 6)
	githubPAT    = "ghp" + "_" + rep("a1B2c3", 6)
	githubFine   = "github" + "_pat_" + rep("11ABCDEFG0", 8)
	awsKeyID     = "AKIA" + "Q3EGRJ5VX2M4TN7B"
	awsSecret    = rep("wJalrXUtnFEMIK7MDENGbPxRfiCYz", 2)[:40]
	googleKey    = "AIza" + "Sy" + rep("D4f5G6h7J8", 4)[:33]
	jwt          = "eyJ" + "hbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" + ".eyJ" + "zdWIiOiIxMjM0NTY3ODkwIn0" + "." + "dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	pemKey       = "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA" + rep("x7Y", 20) + "\n" + rep("Q", 64) + "\n-----END RSA " + "PRIVATE KEY-----"
)

func TestRedactKinds(t *testing.T) {
	tests := []struct {
		name, in, want string
		kind           Kind
	}{
		{"anthropic", "export ANTHROPIC=" + anthropicKey + " # mine", "export ANTHROPIC=[REDACTED:anthropic_key] # mine", AnthropicKey},
		{"openai project", "key " + openAIProj + " here", "key [REDACTED:openai_key] here", OpenAIKey},
		{"openai legacy", "OPENAI " + openAILegacy, "OPENAI [REDACTED:openai_key]", OpenAIKey},
		{"github classic", "token " + githubPAT + ".", "token [REDACTED:github_token].", GitHubToken},
		{"github fine-grained", githubFine, "[REDACTED:github_token]", GitHubToken},
		{"github as env value", "GITHUB_TOKEN=" + githubPAT, "GITHUB_TOKEN=[REDACTED:github_token]", GitHubToken},
		{"aws key id", "id=" + awsKeyID + "\n", "id=[REDACTED:aws_access_key]\n", AWSAccessKey},
		{"aws secret", "aws_secret_access_key = " + awsSecret + "\n", "aws_secret_access_key = [REDACTED:aws_secret_key]\n", AWSSecretKey},
		{"google", `"apiKey": "` + googleKey + `"`, `"apiKey": "[REDACTED:google_key]"`, GoogleKey},
		{"jwt", "cookie session=" + jwt + ";", "cookie session=[REDACTED:jwt];", JWT},
		{"bearer", "Authorization: Bearer " + rep("abcDEF123", 4), "Authorization: Bearer [REDACTED:bearer_token]", BearerToken},
		{"pem", "key:\n" + pemKey + "\nafter", "key:\n[REDACTED:private_key]\nafter", PrivateKey},
		{"pem truncated", "cat id_rsa\n-----BEGIN OPENSSH " + "PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU", "cat id_rsa\n[REDACTED:private_key]", PrivateKey},
		{"url password", "DATABASE=postgres://app:s3cr3tPass@db.internal:5432/app", "DATABASE=postgres://app:[REDACTED:url_password]@db.internal:5432/app", URLPassword},
		{"env secret", "STRIPE_SECRET=sk_live_4eC39HqLyjWDarjtT1zdp7dc\n", "STRIPE_SECRET=[REDACTED:key_value_secret]\n", KeyValue},
		{"yaml password", "  password: hunter2hunter2\n", "  password: [REDACTED:key_value_secret]\n", KeyValue},
		{"json secret", `{"client_secret": "q8Fz-2kLm_93xPq"}`, `{"client_secret": "[REDACTED:key_value_secret]"}`, KeyValue},
		{"quoted env", `DB_PASSWORD='Tr0ub4dor&3x'`, `DB_PASSWORD='[REDACTED:key_value_secret]'`, KeyValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			counts := Counts{}
			got := New(Options{}).Redact(tt.in, counts)
			if got != tt.want {
				// Print only the redacted output: the input holds the secret.
				t.Errorf("Redact = %q, want %q", got, tt.want)
			}
			if counts[tt.kind] != 1 || len(counts) != 1 {
				t.Errorf("counts = %v, want one %s", counts, tt.kind)
			}
			if fs := Scan(tt.in); len(fs) != 1 || fs[0].Kind != tt.kind {
				t.Errorf("Scan found %v, want one %s", fs, tt.kind)
			}
		})
	}
}

func TestNotSecrets(t *testing.T) {
	texts := []string{
		"token := lexer.Next()",
		"if password == \"\" { return errNoPassword }",
		"const maxTokens = 4096\nmax_tokens: 2048\nnum_tokens=123456789",
		"password: string;",
		"API_KEY=$API_KEY",
		"API_KEY=${OPENAI_API_KEY}",
		"TOKEN=<your-token-here>",
		"export GITHUB_TOKEN=xxxxxxxxxxxxxxxx",
		"password=********",
		"secret = os.environ[\"SECRET\"]",
		"token = config.auth.token",
		"apiKey: process.env.API_KEY",
		"tokenizer_path = \"/home/user/tokenizer.json\"",
		"tokenizer = AutoTokenizer.from_pretrained(name)",
		"the password is stored in the vault",
		"See https://github.com/pipeml/pipe and git@github.com:pipeml/pipe.git",
		"postgres://localhost:5432/app",
		"postgres://user:${PGPASSWORD}@localhost/app",
		"Task: ask-token-refresh sk-short",
		"sha256: 3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b",
		"uuid 4d5611e5-241a-462a-8d15-5122611a9569",
		"AKIAshort and AIza too short",
		"Co-Authored-By: Claude <noreply@anthropic.com>",
		"func TestSecretRedaction(t *testing.T) { secretKinds := allKinds() }",
		"PASSWORD_MIN_LENGTH=12",
		"secret_name: my-app-secret",
		"SECRETMEM_MAGIC = 0x5345434d\n\tSIOCGLIFTOKEN = -0x3f879678",
		"in: \"http://user:password@dummy.faketld/\"",
	}
	for _, text := range texts {
		if fs := New(Options{Emails: true, HomePaths: true}).Scan(text); len(fs) != 0 {
			t.Errorf("Scan(%q) = %v, want nothing", text, fs)
		}
	}
}

func TestOptional(t *testing.T) {
	in := "mail bob.smith@acme.io from /home/bob/src and /Users/alice/x and C:\\Users\\carol\\y and /tmp/claude-1000/-home-dave-projects-app/t.out; ok@example.com"
	if got := New(Options{}).Redact(in, nil); got != in {
		t.Errorf("optional detectors ran while off: %q", got)
	}
	counts := Counts{}
	got := New(Options{Emails: true, HomePaths: true}).Redact(in, counts)
	want := "mail [REDACTED:email] from /home/user/src and /Users/user/x and C:\\Users\\user\\y and /tmp/claude-1000/-home-user-projects-app/t.out; ok@example.com"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if counts[Email] != 1 || counts[HomePath] != 4 {
		t.Errorf("counts = %v", counts)
	}
}

func TestFindingsSortedAndDisjoint(t *testing.T) {
	in := "A=" + githubPAT + " B=" + jwt + " " + pemKey + " C=postgres://u:" + "pw12345678@h/x " + awsKeyID
	fs := Scan(in)
	if len(fs) != 5 {
		t.Fatalf("got %d findings (%v), want 5", len(fs), fs)
	}
	for i := 1; i < len(fs); i++ {
		if fs[i].Start < fs[i-1].End {
			t.Errorf("findings %v and %v overlap", fs[i-1], fs[i])
		}
	}
	out := New(Options{}).Redact(in, nil)
	for _, s := range []string{githubPAT, jwt, "pw12345678", awsKeyID, "MIIEow"} {
		if strings.Contains(out, s) {
			t.Errorf("redacted text still holds a secret fragment of length %d", len(s))
		}
	}
}

func BenchmarkRedact(b *testing.B) {
	text := rep("func main() {\n\ttoken := lexer.Next()\n\tfmt.Println(\"/home/bob/x\", token)\n}\n", 200) + "API_KEY=" + githubPAT
	d := New(Options{HomePaths: true})
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		d.Redact(text, nil)
	}
}
