// Package watch reloads the policy when its files change on disk.
//
// It watches the directories that hold the policy file and its set files,
// not the files themselves: editors save by writing a new file and renaming
// it over the old one, and Kubernetes updates a ConfigMap volume by swapping
// its "..data" symlink, and either way a watch on the old file's inode would
// go quiet. Any event in those directories starts a debounce; once the
// directories have been quiet for the debounce interval the watcher reads
// the files and calls Reload only if their content changed, so a burst of
// events makes one reload and an unrelated file in the directory makes none.
package watch
