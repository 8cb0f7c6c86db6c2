//! The plugins of a search path, by unique name: discovery of every library in a list of
//! directories, with refusals collected rather than fatal.

use std::path::PathBuf;

use super::{LoadError, PluginLibrary};

/// The plugins found on a search path, by unique name.
#[derive(Debug, Default)]
pub struct Registry {
    plugins: Vec<PluginLibrary>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Loads every library (files ending in the platform's library extension) in `dirs`, in
    /// order, each directory sorted by file name. Directories that do not exist are skipped.
    /// Returns the registry and what was refused; a refusal does not stop the others.
    pub fn discover(dirs: &[PathBuf]) -> (Registry, Vec<LoadError>) {
        let mut registry = Registry::new();
        let mut refused = Vec::new();
        for dir in dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => {
                    refused.push(LoadError::Io {
                        path: dir.clone(),
                        error,
                    });
                    continue;
                }
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension().and_then(|e| e.to_str())
                            == Some(std::env::consts::DLL_EXTENSION)
                })
                .collect();
            files.sort();
            for file in files {
                if let Err(e) = PluginLibrary::open(&file).and_then(|lib| registry.add(lib)) {
                    refused.push(e);
                }
            }
        }
        (registry, refused)
    }

    /// Adds a library; refuses a second plugin with the same name.
    pub fn add(&mut self, lib: PluginLibrary) -> Result<(), LoadError> {
        if let Some(first) = self.plugins.iter().find(|p| p.name() == lib.name()) {
            return Err(LoadError::Duplicate {
                name: lib.name().to_string(),
                path: lib.path().to_path_buf(),
                first: first.path().to_path_buf(),
            });
        }
        self.plugins.push(lib);
        Ok(())
    }

    /// The plugin called `name`.
    pub fn get(&self, name: &str) -> Result<&PluginLibrary, LoadError> {
        self.plugins
            .iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| LoadError::NotFound {
                name: name.to_string(),
                available: self.plugins.iter().map(|p| p.name().to_string()).collect(),
            })
    }

    /// Every plugin, in load order.
    pub fn iter(&self) -> impl Iterator<Item = &PluginLibrary> {
        self.plugins.iter()
    }

    /// How many plugins are loaded.
    pub fn len(&self) -> usize {
        self.plugins.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }
}
