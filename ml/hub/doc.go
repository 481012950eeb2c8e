// Package hub finds Hugging Face model repositories in the local Hugging
// Face cache and downloads them into it when they are missing, writing the
// layout huggingface_hub writes, so that both share one cache:
//
//	<cache>/models--<org>--<name>/
//	  refs/<revision>            the commit a branch or tag points to
//	  blobs/<etag>               file contents, named by their ETag (the
//	                             sha256 of LFS files, the git blob sha1 of
//	                             others); <etag>.incomplete while downloading
//	  snapshots/<commit>/<path>  relative symlinks into blobs/
//
// The cache folder is $HF_HUB_CACHE, else $HF_HOME/hub, else
// ~/.cache/huggingface/hub. Downloads use $HF_ENDPOINT (default
// https://huggingface.co) and $HF_TOKEN (else the token file huggingface_hub
// saves), resume partial blobs with HTTP Range requests, verify LFS files
// against their sha256, and report progress. With $HF_HUB_OFFLINE=1 (or
// Options.Offline) only the cache is used.
//
// Package checkpoint opens the folder Resolve returns.
package hub
