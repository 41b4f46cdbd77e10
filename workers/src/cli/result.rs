//! `pagestream result DOC_ID`: the published result of a finished document,
//! from the results stream, or from the exports in the object store once
//! the stream no longer holds it.

use std::process::ExitCode;

use clap::Args;
use schemas::{DocumentResult, DocumentStatus};

use super::submit::{ResultFormat, print_result};
use super::worker::block_on;
use super::{Failure, GlobalArgs, connect_client};
use runtime::blobs::{BlobError, BlobStore};
use runtime::client::stored_result;
use runtime::jetstream::assemble::export_key;

#[derive(Debug, Args)]
pub struct ResultArgs {
    /// Document id (the sha256 of its bytes, printed by `submit`)
    pub doc_id: String,
    /// Tenant the document belongs to
    #[arg(long, env = "PAGESTREAM_TENANT", default_value = "default")]
    pub tenant: String,
    /// How the result is printed
    #[arg(long, value_enum, default_value = "json")]
    pub format: ResultFormat,
}

pub fn run(global: &GlobalArgs, args: ResultArgs) -> anyhow::Result<ExitCode> {
    schemas::subjects::validate_tenant(&args.tenant)
        .map_err(|e| Failure::Tenant(format!("invalid tenant `{}`: {e}", args.tenant)))?;
    block_on(async move {
        let (_client, js) = connect_client(global, "pagestream-result").await?;
        let blobs = BlobStore::open(&global.store)?;
        let mut result = stored_result(&js, &blobs, &args.tenant, &args.doc_id).await?;
        if result.is_none() {
            result = exported_result(&blobs, &args.tenant, &args.doc_id).await?;
        }
        let Some(result) = result else {
            return Err(Failure::NotFound(format!(
                "no result for document {} of tenant {} (not finished yet? see `pagestream status {}`)",
                args.doc_id, args.tenant, args.doc_id
            ))
            .into());
        };
        print_result(&result, args.format)?;
        Ok(match result.status {
            DocumentStatus::Complete => ExitCode::SUCCESS,
            DocumentStatus::Partial | DocumentStatus::Failed => ExitCode::FAILURE,
        })
    })
}

/// The JSON export `assemble` wrote to the object store, if it is there.
async fn exported_result(
    blobs: &BlobStore,
    tenant: &str,
    doc_id: &str,
) -> anyhow::Result<Option<DocumentResult>> {
    match blobs.get_key(&export_key(tenant, doc_id, "json")).await {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        Err(BlobError::NotFound(_)) => Ok(None),
        Err(error) => Err(error.into()),
    }
}
