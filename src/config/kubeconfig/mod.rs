//! kubeconfig files: the model, merging, path resolution and context selection, following kubectl and
//! client-go. This is the only module that parses YAML (serde_yaml is archived upstream; a swap to a fork
//! with the same API is a change here alone). JSON kubeconfigs parse as YAML.

mod aliases;
mod entries;
mod model;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use self::entries::{apply_user, cluster_config};
use self::model::{Cluster, Context, KubeconfigFile, Named, User};
use super::Config;
use super::files::{MAX_CONFIG_FILE, read_bounded, read_bounded_text};
use crate::error::{ConfigErrorKind, Error, Result};

/// Which kubeconfig files to read and which context to use.
///
/// ```no_run
/// use kube_elector::config::KubeconfigOptions;
/// let config = KubeconfigOptions::new()
///     .paths(["/etc/kube/base.yaml", "/home/me/.kube/config"])
///     .context("staging")
///     .load()?;
/// # Ok::<(), kube_elector::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct KubeconfigOptions {
    /// Files in merge order, with whether each must exist.
    files: Vec<(PathBuf, bool)>,
    context: Option<String>,
}

impl KubeconfigOptions {
    /// No files yet, the current context.
    pub fn new() -> Self {
        Self::default()
    }

    /// The files in `KUBECONFIG`, else `~/.kube/config`.
    pub fn from_env() -> Self {
        match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            Some(v) => Self::new().paths(std::env::split_paths(&v)),
            None => Self::new().paths(home_config()),
        }
    }

    /// Add a file that must exist.
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.push((path.into(), true));
        self
    }

    /// Add files as `KUBECONFIG` lists them: empty entries and missing files are skipped.
    pub fn paths<P: Into<PathBuf>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        self.files.extend(
            paths
                .into_iter()
                .map(Into::into)
                .filter(|p: &PathBuf| !p.as_os_str().is_empty())
                .map(|p| (p, false)),
        );
        self
    }

    /// Use this context instead of `current-context`.
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// Read, merge and resolve.
    pub fn load(&self) -> Result<Config> {
        let mut merged = Merged::default();
        let mut seen = Vec::new();
        for (path, must_exist) in &self.files {
            if seen.contains(path) {
                continue;
            }
            seen.push(path.clone());
            let text = match read_bounded_text(path, MAX_CONFIG_FILE) {
                Ok(t) => t,
                Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(Error::config_io(
                        ConfigErrorKind::Kubeconfig,
                        format!("reading kubeconfig {}", path.display()),
                        e,
                    ));
                }
            };
            let dir = path
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            merged.add(
                parse(&text, &path.display().to_string())?,
                &path.display().to_string(),
                &dir,
            );
        }
        if merged.files.is_empty() {
            let list: Vec<String> = self
                .files
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect();
            return Err(Error::config(
                ConfigErrorKind::Kubeconfig,
                format!("no kubeconfig file found (looked for: {})", list.join(", ")),
            ));
        }
        merged.resolve(self.context.as_deref())
    }
}

/// `$HOME/.kube/config`.
pub(super) fn home_config() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".kube").join("config"))
}

pub(super) fn from_text(text: &str, base_dir: &Path, context: Option<&str>) -> Result<Config> {
    let mut merged = Merged::default();
    merged.add(
        parse(text, "<kubeconfig text>")?,
        "<kubeconfig text>",
        base_dir,
    );
    merged.resolve(context)
}

fn parse(text: &str, file: &str) -> Result<KubeconfigFile> {
    if text.trim().is_empty() {
        return Ok(KubeconfigFile::default());
    }
    aliases::check_expansion(text, aliases::budget(text.len())).map_err(|e| {
        Error::config(
            ConfigErrorKind::Kubeconfig,
            format!("kubeconfig {file} does not parse: {e}"),
        )
    })?;
    serde_yaml::from_str(text).map_err(|e| {
        Error::config(
            ConfigErrorKind::Kubeconfig,
            format!("kubeconfig {file} does not parse: {e}"),
        )
    })
}

/// An entry and the file that defined it (for messages and relative paths).
struct Origin<T> {
    item: T,
    file: String,
    dir: PathBuf,
}

#[derive(Default)]
struct Merged {
    files: Vec<String>,
    current_context: Option<(String, String)>,
    clusters: HashMap<String, Origin<Cluster>>,
    users: HashMap<String, Origin<User>>,
    contexts: HashMap<String, Origin<Context>>,
}

fn merge_into<T: Default>(
    map: &mut HashMap<String, Origin<T>>,
    list: Option<Vec<Named<T>>>,
    file: &str,
    dir: &Path,
) {
    for named in list.into_iter().flatten() {
        // The first file that defines a name wins, wholesale. An entry without a body reads as empty.
        map.entry(named.name).or_insert_with(|| Origin {
            item: named.item.unwrap_or_default(),
            file: file.to_string(),
            dir: dir.to_path_buf(),
        });
    }
}

impl Merged {
    fn add(&mut self, f: KubeconfigFile, file: &str, dir: &Path) {
        self.files.push(file.to_string());
        if self.current_context.is_none() {
            if let Some(c) = f.current_context.filter(|c| !c.is_empty()) {
                self.current_context = Some((c, file.to_string()));
            }
        }
        merge_into(&mut self.clusters, f.clusters, file, dir);
        merge_into(&mut self.users, f.users, file, dir);
        merge_into(&mut self.contexts, f.contexts, file, dir);
    }

    fn resolve(&self, context: Option<&str>) -> Result<Config> {
        let files = self.files.join(", ");
        let ctx_name = match context {
            Some(c) => c.to_string(),
            None => self.current_context.as_ref().map(|(c, _)| c.clone()).ok_or_else(|| {
                Error::config(ConfigErrorKind::Kubeconfig, format!(
                    "kubeconfig {files} has no current-context: set one (kubectl config use-context NAME) or name a context"
                ))
            })?,
        };
        let ctx = self.contexts.get(&ctx_name).ok_or_else(|| {
            let mut known: Vec<&String> = self.contexts.keys().collect();
            known.sort();
            Error::config(
                ConfigErrorKind::Kubeconfig,
                format!(
                    "kubeconfig {files}: context {ctx_name:?} not found (known contexts: {known:?})"
                ),
            )
        })?;
        let cluster_name = ctx.item.cluster.clone().unwrap_or_default();
        let cluster = self.clusters.get(&cluster_name).ok_or_else(|| {
            Error::config(ConfigErrorKind::Kubeconfig, format!(
                "kubeconfig {}: context {ctx_name:?} refers to cluster {cluster_name:?}, which is not defined",
                ctx.file
            ))
        })?;
        let mut config = cluster_config(cluster, &cluster_name)?;
        if let Some(user_name) = ctx.item.user.as_deref().filter(|u| !u.is_empty()) {
            let user = self.users.get(user_name).ok_or_else(|| {
                Error::config(ConfigErrorKind::Kubeconfig, format!(
                    "kubeconfig {}: context {ctx_name:?} refers to user {user_name:?}, which is not defined",
                    ctx.file
                ))
            })?;
            config = apply_user(config, user, user_name)?;
        }
        if let Some(ns) = ctx.item.namespace.as_deref().filter(|n| !n.is_empty()) {
            config = config.with_namespace(ns);
        }
        Ok(config)
    }
}

fn resolve_path(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// The bytes of a `X` / `X-data` pair: data beats path, both set is an error.
fn data_or_file(
    data: &Option<String>,
    path: &Option<String>,
    field: &str,
    owner: &str,
    origin_file: &str,
    dir: &Path,
) -> Result<Option<Vec<u8>>> {
    let data = data.as_deref().filter(|d| !d.trim().is_empty());
    let path = path.as_deref().filter(|p| !p.is_empty());
    match (data, path) {
        (Some(_), Some(_)) => Err(Error::config(
            ConfigErrorKind::Kubeconfig,
            format!(
                "kubeconfig {origin_file}: {owner} sets both {field} and {field}-data: keep one"
            ),
        )),
        (Some(d), None) => crate::config::base64_decode(d).map(Some).map_err(|e| {
            Error::config(
                ConfigErrorKind::Kubeconfig,
                format!("kubeconfig {origin_file}: {owner}: {field}-data is not valid base64: {e}"),
            )
        }),
        (None, Some(p)) => {
            let p = resolve_path(dir, p);
            read_bounded(&p, MAX_CONFIG_FILE).map(Some).map_err(|e| {
                Error::config_io(
                    ConfigErrorKind::Kubeconfig,
                    format!(
                        "kubeconfig {origin_file}: {owner}: reading {field} {}",
                        p.display()
                    ),
                    e,
                )
            })
        }
        (None, None) => Ok(None),
    }
}
