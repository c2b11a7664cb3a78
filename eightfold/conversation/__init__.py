"""Conversation analysis organised by the four steps of Zhang et al., "The Imperative of
Conversation Analysis in the Era of LLMs" (arXiv 2409.14195): scene reconstruction, causality
analysis, skill enhancement and conversation generation.

The survey defines the process and ships no code; this is a pipeline built on its framework for
customer-service transcripts. Every step has an offline backend (rules, VADER, the real MiniLM
sentence encoder, scikit-learn, scipy); steps 1, 2 and 4 can also use an OpenAI-compatible LLM.
Both backends fill the same validated schema (:class:`ConversationAnalysis`).

Examples
--------
>>> from eightfold.conversation import read_conversations, Analyzer, AnalyzerConfig
>>> convs = read_conversations("calls.jsonl").conversations  # doctest: +SKIP
>>> analyses, errors = Analyzer().analyze_many(convs)  # doctest: +SKIP
"""

from __future__ import annotations

from eightfold.conversation.causality import (
    Driver,
    DriverReport,
    attribute_changes,
    conversation_features,
    find_friction,
    ground_attributions,
    outcome_drivers,
)
from eightfold.conversation.encoder import Encoder, HashingEncoder, MiniLMEncoder, get_encoder
from eightfold.conversation.ingest import (
    IngestError,
    IngestResult,
    conversation_from_dict,
    conversations_from_text,
    normalise_role,
    read_conversations,
)
from eightfold.conversation.intents import (
    IntentCatalogue,
    IntentClusters,
    clustering_scores,
    discover_intents,
    hungarian_accuracy,
    load_catalogue,
)
from eightfold.conversation.llm_backend import LLMAnalyzer, LLMExtraction, extraction_schema
from eightfold.conversation.redact import redact_conversation, redact_text
from eightfold.conversation.report import render_html, write_html_report
from eightfold.conversation.scene import (
    AnalysisError,
    Analyzer,
    AnalyzerConfig,
    analyze,
    dialogue_acts,
    emotion_of,
)
from eightfold.conversation.schema import (
    Attribution,
    Conversation,
    ConversationAnalysis,
    FrictionEvent,
    Turn,
    TurnAnalysis,
    analysis_json_schema,
)
from eightfold.conversation.simulate import (
    EndpointAgent,
    LLMCustomer,
    RuleAgent,
    Scenario,
    SimulationReport,
    TemplateCustomer,
    evaluate_simulations,
    scenario_from_analysis,
    simulate,
    template_batch,
)
from eightfold.conversation.skills import (
    ExemplarIndex,
    Guideline,
    Violation,
    check_guidelines,
    dpo_pairs,
    load_guidelines,
    sft_pairs,
    write_jsonl,
)

__all__ = [
    "AnalysisError",
    "Analyzer",
    "AnalyzerConfig",
    "Attribution",
    "Conversation",
    "ConversationAnalysis",
    "Driver",
    "DriverReport",
    "Encoder",
    "EndpointAgent",
    "ExemplarIndex",
    "FrictionEvent",
    "Guideline",
    "HashingEncoder",
    "IngestError",
    "IngestResult",
    "IntentCatalogue",
    "IntentClusters",
    "LLMAnalyzer",
    "LLMCustomer",
    "LLMExtraction",
    "MiniLMEncoder",
    "RuleAgent",
    "Scenario",
    "SimulationReport",
    "TemplateCustomer",
    "Turn",
    "TurnAnalysis",
    "Violation",
    "analysis_json_schema",
    "analyze",
    "attribute_changes",
    "check_guidelines",
    "clustering_scores",
    "conversation_features",
    "conversation_from_dict",
    "conversations_from_text",
    "dialogue_acts",
    "discover_intents",
    "dpo_pairs",
    "emotion_of",
    "evaluate_simulations",
    "extraction_schema",
    "find_friction",
    "get_encoder",
    "ground_attributions",
    "hungarian_accuracy",
    "load_catalogue",
    "load_guidelines",
    "normalise_role",
    "outcome_drivers",
    "read_conversations",
    "redact_conversation",
    "redact_text",
    "render_html",
    "scenario_from_analysis",
    "sft_pairs",
    "simulate",
    "template_batch",
    "write_html_report",
    "write_jsonl",
]
