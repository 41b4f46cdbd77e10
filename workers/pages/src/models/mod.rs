//! Model inference: the ONNX Runtime library, one [`Model`] per ONNX file
//! (a small pool of sessions so that several worker threads can run it at
//! once) and the [`Models`] registry the steps take their models from.

pub mod prep;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, TensorRef};
use prometheus::{Histogram, HistogramOpts, HistogramVec};
use rayon::prelude::*;

use crate::error::{ErrorKind, StepError};
use crate::page::StepMeter;

/// Name of the histogram [`BATCH_SIZES`].
pub const BATCH_SIZE_METRIC: &str = "pagestream_model_batch_size";

/// Batch size of every inference, label `model`: process-wide, because the
/// models are loaded once per process; the runtime's metrics export it.
pub static BATCH_SIZES: LazyLock<HistogramVec> = LazyLock::new(|| {
    let buckets = vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
    let opts = HistogramOpts::new(
        BATCH_SIZE_METRIC,
        "Inputs per model inference (the first dimension of its input)",
    )
    .buckets(buckets);
    // The definition is constant and valid; `new` only fails on a bad name.
    HistogramVec::new(opts, &["model"]).unwrap_or_else(|e| panic!("invalid metric: {e}"))
});

/// What can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The ONNX Runtime library file does not exist.
    #[error("onnx runtime library not found at {path}: run ./setup")]
    RuntimeMissing {
        /// Where the library was looked for.
        path: PathBuf,
    },
    /// The library exists but cannot be used (not a library, wrong version).
    #[error("cannot use onnx runtime library {path}: {reason}; run ./setup")]
    Runtime {
        /// The library file.
        path: PathBuf,
        /// What ONNX Runtime or the loader said.
        reason: String,
    },
    /// A model file does not exist.
    #[error("model file {path} for `{name}` not found: run ./setup")]
    ModelMissing {
        /// The model's name.
        name: String,
        /// Where its file was looked for.
        path: PathBuf,
    },
    /// ONNX Runtime refused the model file.
    #[error("cannot load model `{name}` from {path}: {reason}")]
    Load {
        /// The model's name.
        name: String,
        /// Its file.
        path: PathBuf,
        /// What ONNX Runtime said.
        reason: String,
    },
    /// No model of that name is registered.
    #[error("no model named `{0}` is loaded")]
    Unknown(String),
    /// Inference failed.
    #[error("model `{name}` failed to run: {reason}")]
    Run {
        /// The model's name.
        name: String,
        /// What ONNX Runtime said.
        reason: String,
    },
    /// The model gave something other than what the caller expects.
    #[error("model `{name}` gave an unexpected output: {reason}")]
    Output {
        /// The model's name.
        name: String,
        /// What was wrong.
        reason: String,
    },
}

impl From<ModelError> for StepError {
    fn from(error: ModelError) -> Self {
        StepError::reject(ErrorKind::Model, error.to_string())
    }
}

/// The process's ONNX Runtime environment, created on first use.
static RUNTIME: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

/// Loads ONNX Runtime from `library` once per process and returns its
/// environment; later calls with the same library return the same one.
///
/// A missing or unusable library is an error telling to run `./setup`,
/// never a panic.
pub fn runtime(library: &Path) -> Result<Environment, ModelError> {
    let missing = || ModelError::RuntimeMissing { path: library.to_path_buf() };
    if !library.is_file() {
        return Err(missing());
    }
    let path = library.canonicalize().map_err(|_| missing())?;
    let mut loaded = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((loaded_path, env)) = loaded.as_ref() {
        return if *loaded_path == path {
            Ok(env.clone())
        } else {
            Err(ModelError::Runtime {
                path,
                reason: format!("another library is already loaded from {}", loaded_path.display()),
            })
        };
    }
    let fail = |reason: String| ModelError::Runtime { path: path.clone(), reason };
    // ort panics on some malformed libraries instead of returning an error.
    let built = std::panic::catch_unwind(|| {
        ort::init_from(&path)
            .map_err(|e| e.to_string())?
            .with_name("pagestream")
            .build()
            .map_err(|e| e.to_string())
    });
    let env = match built {
        Ok(Ok(env)) => env,
        Ok(Err(reason)) => return Err(fail(reason)),
        Err(_) => return Err(fail("the library could not be initialised".into())),
    };
    *loaded = Some((path, env.clone()));
    Ok(env)
}

/// How to load one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Name the steps use for the model, e.g. `det`.
    pub name: String,
    /// Path of the ONNX file.
    pub path: PathBuf,
    /// Intra-op threads per session; 1 lets pages run in parallel instead.
    pub intra_threads: usize,
    /// Sessions in the pool, i.e. how many threads can run the model at
    /// once; none: the number of worker threads given to [`Models::load`].
    pub pool_size: Option<usize>,
}

impl ModelSpec {
    /// A spec with one intra-op thread and the default pool size.
    pub fn new(name: &str, path: impl Into<PathBuf>) -> Self {
        ModelSpec { name: name.to_string(), path: path.into(), intra_threads: 1, pool_size: None }
    }
}

/// One model: its sessions, input shape and metadata labels.
///
/// Shared between steps and threads through an `Arc`; [`Model::run`] takes
/// a free session from the pool (waiting when all are busy).
pub struct Model {
    name: String,
    input_shape: Vec<i64>,
    labels: Option<Vec<String>>,
    batch_sizes: Histogram,
    sessions: Mutex<Vec<Session>>,
    returned: Condvar,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A tensor of a model's output, borrowed from [`Outputs`].
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    /// Dimensions, outermost first.
    pub shape: &'a [i64],
    /// The values, row-major.
    pub data: &'a [f32],
}

/// The outputs of one run, in the model's output order.
#[derive(Debug)]
pub struct Outputs {
    model: String,
    values: Vec<DynValue>,
}

impl Outputs {
    /// Number of outputs.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no outputs.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Output `index` as an f32 tensor of rank `rank`.
    pub fn tensor(&self, index: usize, rank: usize) -> Result<TensorView<'_>, ModelError> {
        let fail = |reason: String| ModelError::Output { name: self.model.clone(), reason };
        let value = self.values.get(index).ok_or_else(|| fail(format!("no output {index}")))?;
        let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| fail(e.to_string()))?;
        if shape.len() != rank {
            return Err(fail(format!("output {index} has shape {shape:?}, expected rank {rank}")));
        }
        Ok(TensorView { shape, data })
    }
}

impl Model {
    /// Loads `spec` with `pool_size` sessions (in parallel) and runs a
    /// warm-up inference on each.
    pub fn load(
        env: &Environment,
        spec: &ModelSpec,
        pool_size: usize,
    ) -> Result<Model, ModelError> {
        if !spec.path.is_file() {
            return Err(ModelError::ModelMissing {
                name: spec.name.clone(),
                path: spec.path.clone(),
            });
        }
        let sessions = (0..pool_size.max(1))
            .into_par_iter()
            .map(|_| {
                let mut session = open_session(env, spec)?;
                warm_up(&mut session).map_err(|reason| ModelError::Load {
                    name: spec.name.clone(),
                    path: spec.path.clone(),
                    reason: format!("warm-up failed: {reason}"),
                })?;
                Ok(session)
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let first = &sessions[0];
        let input_shape = first
            .inputs()
            .first()
            .and_then(|input| input.dtype().tensor_shape())
            .map(|shape| shape.to_vec())
            .unwrap_or_default();
        let labels = first
            .metadata()
            .ok()
            .and_then(|meta| meta.custom("character"))
            .map(|text| text.lines().map(str::to_string).collect());
        Ok(Model {
            name: spec.name.clone(),
            input_shape,
            labels,
            batch_sizes: BATCH_SIZES.with_label_values(&[spec.name.as_str()]),
            sessions: Mutex::new(sessions),
            returned: Condvar::new(),
        })
    }

    /// The model's name in the registry.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Shape of the first input as declared by the model (-1: dynamic).
    pub fn input_shape(&self) -> &[i64] {
        &self.input_shape
    }

    /// Labels from the model's metadata key `character` (one per line): the
    /// recognition dictionary, the layout or orientation classes.
    pub fn labels(&self) -> Option<&[String]> {
        self.labels.as_deref()
    }

    /// Like [`Model::labels`], but an error naming the model when absent.
    pub fn require_labels(&self) -> Result<&[String], ModelError> {
        self.labels().ok_or_else(|| ModelError::Output {
            name: self.name.clone(),
            reason: "no `character` metadata".into(),
        })
    }

    /// Runs the model on one f32 input of `shape` (NCHW), adding the time
    /// spent to `meter.inference` and the batch size to [`BATCH_SIZES`].
    pub fn run(
        &self,
        shape: &[usize],
        data: &[f32],
        meter: &mut StepMeter,
    ) -> Result<Outputs, ModelError> {
        let fail = |reason: String| ModelError::Run { name: self.name.clone(), reason };
        let input = TensorRef::from_array_view((shape, data)).map_err(|e| fail(e.to_string()))?;
        self.batch_sizes.observe(shape.first().copied().unwrap_or(1) as f64);
        let mut session = self.take();
        let started = Instant::now();
        let result = session.run(ort::inputs![input]);
        meter.inference += started.elapsed();
        let values = result.map_err(|e| fail(e.to_string()))?.into_iter().map(|(_, v)| v).collect();
        Ok(Outputs { model: self.name.clone(), values })
    }

    fn take(&self) -> PooledSession<'_> {
        let mut free = self.free();
        loop {
            if let Some(session) = free.pop() {
                return PooledSession { model: self, session: Some(session) };
            }
            free = self.returned.wait(free).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn free(&self) -> MutexGuard<'_, Vec<Session>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A session out of its pool; goes back on drop, even on panic.
struct PooledSession<'a> {
    model: &'a Model,
    session: Option<Session>,
}

impl std::ops::Deref for PooledSession<'_> {
    type Target = Session;

    fn deref(&self) -> &Session {
        self.session.as_ref().unwrap_or_else(|| unreachable!("session taken"))
    }
}

impl std::ops::DerefMut for PooledSession<'_> {
    fn deref_mut(&mut self) -> &mut Session {
        self.session.as_mut().unwrap_or_else(|| unreachable!("session taken"))
    }
}

impl Drop for PooledSession<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.model.free().push(session);
            self.model.returned.notify_one();
        }
    }
}

fn open_session(env: &Environment, spec: &ModelSpec) -> Result<Session, ModelError> {
    let fail = |reason: String| ModelError::Load {
        name: spec.name.clone(),
        path: spec.path.clone(),
        reason,
    };
    let built =
        |result: ort::session::builder::BuilderResult| result.map_err(|e| fail(e.to_string()));
    let builder = Session::builder(env).map_err(|e| fail(e.to_string()))?;
    let builder = built(builder.with_optimization_level(GraphOptimizationLevel::All))?;
    let builder = built(builder.with_intra_threads(spec.intra_threads.max(1)))?;
    let mut builder = built(builder.with_intra_op_spinning(spec.intra_threads > 1))?;
    builder.commit_from_file(&spec.path).map_err(|e| fail(e.to_string()))
}

/// Runs the model once on zeros: a batch of one, 32 for dynamic sizes.
fn warm_up(session: &mut Session) -> Result<(), String> {
    let Some(declared) = session.inputs().first().and_then(|i| i.dtype().tensor_shape()) else {
        return Err("the first input is not a tensor".into());
    };
    let shape: Vec<usize> = declared
        .iter()
        .enumerate()
        .map(|(axis, &dim)| match usize::try_from(dim) {
            Ok(dim) if dim > 0 => dim,
            _ if axis == 0 => 1,
            _ => 32,
        })
        .collect();
    let data = vec![0f32; shape.iter().product()];
    let input = TensorRef::from_array_view((shape.as_slice(), data.as_slice()))
        .map_err(|e| e.to_string())?;
    session.run(ort::inputs![input]).map(drop).map_err(|e| e.to_string())
}

/// The loaded models, by name.
#[derive(Debug, Clone, Default)]
pub struct Models {
    models: Vec<Arc<Model>>,
}

impl Models {
    /// Loads ONNX Runtime from `library` and every model in `specs` (in
    /// parallel, each warmed up). A spec without a pool size gets
    /// `worker_threads` sessions.
    pub fn load(
        library: &Path,
        specs: &[ModelSpec],
        worker_threads: usize,
    ) -> Result<Models, ModelError> {
        let env = runtime(library)?;
        let models = specs
            .par_iter()
            .map(|spec| {
                Model::load(&env, spec, spec.pool_size.unwrap_or(worker_threads)).map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Models { models })
    }

    /// The model called `name`.
    pub fn get(&self, name: &str) -> Result<Arc<Model>, ModelError> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .cloned()
            .ok_or_else(|| ModelError::Unknown(name.to_string()))
    }
}
