//! `pagestream cancel DOC_ID`: mark a document cancelled; workers skip its
//! remaining pages (they land as failed) and the document completes.

use std::process::ExitCode;

use clap::Args;

use super::GlobalArgs;
use super::status::documents;
use super::worker::block_on;

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// Document id (the sha256 of its bytes)
    pub doc_id: String,
    /// Tenant the document belongs to
    #[arg(long, env = "PAGESTREAM_TENANT", default_value = "default")]
    pub tenant: String,
}

pub fn run(global: &GlobalArgs, args: CancelArgs) -> anyhow::Result<ExitCode> {
    block_on(async move {
        let documents = documents(global, "pagestream-cancel").await?;
        let state = documents.get(&args.tenant, &args.doc_id).await?;
        if let Some(finished) = state.as_ref().and_then(|s| s.finished) {
            println!("document {} already finished ({:?})", args.doc_id, finished.status);
            return Ok(ExitCode::SUCCESS);
        }
        documents.cancel(&args.tenant, &args.doc_id).await?;
        println!("document {} cancelled", args.doc_id);
        Ok(ExitCode::SUCCESS)
    })
}
