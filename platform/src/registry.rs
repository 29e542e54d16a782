//! Which compiled component serves which provider.

use std::borrow::Cow;
use std::collections::BTreeMap;

use terapi_host::{ProviderComponent, Providers, Runtime};

use crate::PlatformError;

/// A component's bytes and the providers it serves.
pub struct ComponentSource {
    /// Keys of providers.yaml this component serves.
    pub providers: Vec<String>,
    /// Where it came from, for errors (a path, or "bundled").
    pub origin: String,
    pub wasm: Cow<'static, [u8]>,
}

pub struct ComponentRegistry {
    by_provider: BTreeMap<String, ProviderComponent>,
}

impl ComponentRegistry {
    /// Compiles each source once, however many providers it serves.
    pub fn load(
        runtime: &Runtime,
        providers: &Providers,
        sources: Vec<ComponentSource>,
    ) -> Result<ComponentRegistry, PlatformError> {
        let mut by_provider = BTreeMap::new();
        for source in sources {
            // A provider providers.yaml lacks, or cannot serve, is kept
            // out; using it says why.
            for provider in &source.providers {
                if let Err(e) = providers.get(provider) {
                    tracing::warn!("{} serves `{provider}`, which cannot be used: {e}", source.origin);
                }
            }
            let component = runtime.load_component(&source.wasm).map_err(|e| match e {
                terapi_host::Error::Load(message) => terapi_host::Error::Load(format!("{}: {message}", source.origin)),
                other => other,
            })?;
            for provider in source.providers {
                by_provider.insert(provider, component.clone());
            }
        }
        Ok(ComponentRegistry { by_provider })
    }

    /// The providers some component serves.
    pub fn providers(&self) -> impl Iterator<Item = &str> {
        self.by_provider.keys().map(String::as_str)
    }

    pub fn get(&self, provider: &str) -> Result<&ProviderComponent, PlatformError> {
        self.by_provider.get(provider).ok_or_else(|| PlatformError::NoComponent {
            provider: provider.to_string(),
            hint: if self.by_provider.is_empty() {
                "no components are loaded".into()
            } else {
                format!(
                    "components are loaded for {}; give one for `{provider}` (--component {provider}=FILE.wasm)",
                    self.by_provider.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
                )
            },
        })
    }
}
