//! The stages pagestream has, the steps each can run and the models steps
//! need: the names a pipeline file may use.

/// Model name of text detection (DB).
pub const MODEL_DET: &str = "det";
/// Model name of text-line recognition (CTC).
pub const MODEL_REC: &str = "rec";
/// Model name of the text-line 0/180 degree classifier.
pub const MODEL_CLS: &str = "cls";
/// Model name of layout region detection.
pub const MODEL_LAYOUT: &str = "layout";
/// Model name of page orientation.
pub const MODEL_ORIENTATION: &str = "orientation";

/// The stage every document enters.
pub const ENTRY_STAGE: &str = "split";
/// The stage every path ends in.
pub const EXIT_STAGE: &str = "assemble";

/// A step a stage can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepSpec {
    /// The step's name, e.g. `detect_text`.
    pub name: &'static str,
    /// The model the step runs, if any; its stage must list it.
    pub model: Option<&'static str>,
    /// Whether the step reads the document bytes (not only the page image),
    /// so that the transports carry them up to the last such stage.
    pub reads_document: bool,
}

/// A stage and the steps it can run, in their natural order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageSpec {
    /// The stage's name, e.g. `ocr`.
    pub name: &'static str,
    /// The steps it can run.
    pub steps: &'static [StepSpec],
}

impl StageSpec {
    /// The step called `name`, if this stage has it.
    pub fn step(&self, name: &str) -> Option<&'static StepSpec> {
        self.steps.iter().find(|step| step.name == name)
    }

    /// The names of this stage's steps.
    pub fn step_names(&self) -> Vec<&'static str> {
        self.steps.iter().map(|step| step.name).collect()
    }
}

const fn step(name: &'static str) -> StepSpec {
    StepSpec { name, model: None, reads_document: false }
}

const fn document_step(name: &'static str) -> StepSpec {
    StepSpec { name, model: None, reads_document: true }
}

const fn model_step(name: &'static str, model: &'static str) -> StepSpec {
    StepSpec { name, model: Some(model), reads_document: false }
}

/// Every stage, in pipeline order.
pub const STAGES: &[StageSpec] = &[
    StageSpec { name: "split", steps: &[step("sniff"), step("validate"), step("fan_out")] },
    StageSpec {
        name: "render",
        steps: &[document_step("rasterize"), document_step("extract_text")],
    },
    StageSpec {
        name: "preprocess",
        steps: &[model_step("orient", MODEL_ORIENTATION), step("deskew")],
    },
    StageSpec { name: "layout", steps: &[model_step("detect_regions", MODEL_LAYOUT)] },
    StageSpec {
        name: "ocr",
        steps: &[
            model_step("detect_text", MODEL_DET),
            model_step("classify_lines", MODEL_CLS),
            model_step("recognize_text", MODEL_REC),
        ],
    },
    StageSpec {
        name: "enrich",
        steps: &[
            step("order_reading"),
            step("detect_language"),
            step("extract_fields"),
            step("build_tables"),
            step("classify_page"),
        ],
    },
    StageSpec { name: "assemble", steps: &[step("assemble")] },
];

/// The stage called `name`, if there is one.
pub fn stage_spec(name: &str) -> Option<&'static StageSpec> {
    STAGES.iter().find(|stage| stage.name == name)
}

/// The position of stage `name` in [`STAGES`], used to order stages.
pub(crate) fn stage_rank(name: &str) -> usize {
    STAGES.iter().position(|stage| stage.name == name).unwrap_or(STAGES.len())
}

/// The names of all stages.
pub fn stage_names() -> Vec<&'static str> {
    STAGES.iter().map(|stage| stage.name).collect()
}
