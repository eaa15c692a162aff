import Testing
import KVStore
@testable import KVShell

@Suite("The progress line")
struct ProgressTextTests {
    private let progress = OperationControl.Progress(stage: "applying", item: "big.json", done: 3_300_000, total: 9_500_000, number: 2)

    @Test("done/total, percentage, rate, time left and how to stop, within the terminal's width")
    func wordsAndWidth() {
        let line = ProgressText.line(title: ":rebuild", progress: progress, elapsed: .seconds(1), cancelling: false, width: 120)
        #expect(line == ":rebuild  applying big.json  [######..............]  34%  3.3 MB/9.5 MB  3.3 MB/s  2s left  Ctrl-C cancels")
        for width in [40, 80, 100] {
            let narrow = ProgressText.line(title: ":rebuild", progress: progress, elapsed: .seconds(1), cancelling: false, width: width)
            #expect(narrow.count <= width - 3, "room for an echoed ^C at \(width): \(narrow)")
        }
        let eighty = ProgressText.line(title: ":rebuild", progress: progress, elapsed: .seconds(1), cancelling: false, width: 80)
        #expect(eighty.hasSuffix("2s left  Ctrl-C cancels"), "the bar narrows or goes before words do: \(eighty)")
        let cancelling = ProgressText.line(title: ":check", progress: progress, elapsed: .seconds(1), cancelling: true, width: 120)
        #expect(cancelling.hasSuffix("cancelling..."))
    }

    @Test("sizes and durations read as people write them")
    func units() {
        #expect(ProgressText.bytes(999) == "999 B")
        #expect(ProgressText.bytes(1_500) == "1.5 KB")
        #expect(ProgressText.bytes(25_000_000) == "25.0 MB")
        #expect(ProgressText.duration(2.1) == "3s")
        #expect(ProgressText.duration(125) == "2m05s")
        #expect(ProgressText.duration(7300) == "2h01m")
        #expect(ProgressText.duration(.infinity) == "?")
    }
}
